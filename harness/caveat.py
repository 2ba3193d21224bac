"""The one warning type: a caveat carried on a result, never printed where it is made.

Every stage that finds something a person should know (a skipped log, an outlier, a
node imbalance, a sweep without a model) returns ``Caveat``s beside its result; the
report prints their messages and the JSON output carries them as objects.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caveat:
    kind: str       # what sort of finding: skipped, duplicate, no-result, outlier, drift, nodes...
    subject: str    # what it is about: a hypothesis, a log or folder path; "" for the whole data
    message: str    # the sentence a person reads, with the fix
    run: int | None = None   # index into the subject's runs, when about one run (not in the JSON)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "message": self.message}
