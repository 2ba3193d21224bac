"""Token shards for the trainer: download FineWeb, make synthetic data, inspect a shard.

    python -m train.data synthetic --out data/synthetic
    python -m train.data fineweb --out data/fineweb10B --num-train 9
    python -m train.data inspect data/synthetic/synthetic_val_000000.bin

Shard format (the speedrun's): a 256 x int32 header (magic 20240520, version 1, token
count), then the tokens as uint16. Documents are separated by a BOS token: 50256 for the
GPT-2 vocabulary, the last id of a small synthetic vocabulary.
"""

import argparse
import json
import os
import sys

import numpy as np

MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256
HEADER_BYTES = HEADER_INTS * 4
FINEWEB_REPO = "kjj0/fineweb10B-gpt2"
SYNTHETIC_CMD = "python -m train.data synthetic --out DIR"


class DataError(Exception):
    """A bad or missing shard or bad option: one line on stderr, exit code 2."""


def bos_for_vocab(vocab_size):
    return 50256 if vocab_size > 50256 else vocab_size - 1


# ---------------------------------------------------------------------------- shard I/O

def write_shard(path, tokens):
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise DataError(f"token ids must fit in uint16 to write {path}")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = (MAGIC, VERSION, tokens.size)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.uint16).tobytes())
    os.replace(tmp, path)  # a half-written shard never carries the final name


def read_header(path, fix=SYNTHETIC_CMD):
    """Check magic, version and that the file size matches the token count; return the count."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(HEADER_BYTES), dtype=np.int32)
    except OSError as e:
        raise DataError(f"cannot read shard {path} ({e.strerror}); create it with: {fix}")
    if header.size != HEADER_INTS or header[0] != MAGIC or header[1] != VERSION:
        raise DataError(f"{path} is not a token shard (bad magic/version header); recreate it with: {fix}")
    n = int(header[2])
    if size != HEADER_BYTES + 2 * n:
        raise DataError(f"{path} is {size} bytes but its header says {n} tokens "
                        f"({HEADER_BYTES + 2 * n} bytes); recreate it with: {fix}")
    return n


def read_shard(path, fix=SYNTHETIC_CMD):
    read_header(path, fix)
    return np.fromfile(path, dtype=np.uint16, offset=HEADER_BYTES)


# ---------------------------------------------------------------------------- synthetic

class MarkovSource:
    """A sparse random first-order Markov chain over the vocabulary, BOS included.

    Every token has `branching` random successors with Dirichlet weights, plus BOS (end of
    document) with probability 1/mean_doc_len; BOS is followed by a document's first token.
    Because documents are part of the chain, its entropy rate is exact and is the lowest
    loss any model can reach on the stream.
    """

    def __init__(self, vocab_size, branching, mean_doc_len, seed):
        rng = np.random.default_rng(seed)
        V, k = vocab_size, branching
        self.bos = bos_for_vocab(V)
        # k distinct ordinary successors per token (redraw rows with repeats), then map the
        # ids past BOS up by one so that BOS is never an ordinary successor
        succ = rng.integers(0, V - 1, size=(V, k))
        while True:
            s = np.sort(succ, axis=1)
            bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not bad.any():
                break
            succ[bad] = rng.integers(0, V - 1, size=(int(bad.sum()), k))
        succ = succ + (succ >= self.bos)
        w = rng.dirichlet(np.ones(k), size=V)
        p_end = 1.0 / mean_doc_len
        # ordinary tokens end the document (-> BOS) with p_end; BOS starts a new one
        succ = np.concatenate([succ, np.full((V, 1), self.bos)], axis=1)
        prob = np.concatenate([w * (1 - p_end), np.full((V, 1), p_end)], axis=1)
        succ[self.bos, k], prob[self.bos] = succ[self.bos, 0], np.append(w[self.bos], 0.0)
        self.succ, self.prob, self.cdf = succ, prob, np.cumsum(prob, axis=1)
        self.cdf[:, -1] = 1.0

    def entropy_rate(self):
        """sum_s pi(s) H(P[s]) in nats, pi the stationary distribution (power iteration)."""
        V = self.succ.shape[0]
        pi = np.full(V, 1.0 / V)
        for _ in range(10000):
            new = np.zeros(V)
            np.add.at(new, self.succ.ravel(), (pi[:, None] * self.prob).ravel())
            if np.abs(new - pi).sum() < 1e-13:
                pi = new
                break
            pi = new
        p = self.prob
        h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        return float((pi * h).sum())

    def sample(self, n_tokens, rng, streams=256):
        """n_tokens of the chain, starting at a BOS. Independent streams run in parallel;
        each is cut right before one of its BOS tokens so that joining them is itself a
        sample of the chain."""
        steps = n_tokens // streams + 64
        out = np.empty((streams, steps), dtype=np.int64)
        state = np.full(streams, self.bos)
        for t in range(steps):
            out[:, t] = state
            u = rng.random(streams)
            j = (u[:, None] > self.cdf[state]).sum(axis=1)
            state = self.succ[state, np.minimum(j, self.succ.shape[1] - 1)]
        pieces = []
        for row in out:
            last = np.flatnonzero(row == self.bos)[-1]
            pieces.append(row[:last] if last > 0 else row)
        tokens = np.concatenate(pieces)
        while tokens.size < n_tokens:  # rare: streams ended early; top up
            tokens = np.concatenate([tokens, self.sample(n_tokens - tokens.size, rng, streams)])
        return tokens[:n_tokens]

    def nll(self, tokens):
        """Mean -log p(next | current) under the source: the oracle's loss on these tokens."""
        cur, nxt = tokens[:-1], tokens[1:]
        match = self.succ[cur] == nxt[:, None]
        p = (self.prob[cur] * match).sum(axis=1)
        return float(-np.log(np.maximum(p, 1e-300)).mean())


def make_synthetic(out, vocab_size=256, train_tokens=1_000_000, train_shards=2, val_tokens=65536,
                   branching=4, mean_doc_len=96, seed=1234):
    if not 2 < vocab_size <= 2**16:
        raise DataError(f"--vocab-size {vocab_size} must be in 3..65536 (shards hold uint16)")
    if branching < 1 or branching >= vocab_size - 1:
        raise DataError(f"--branching {branching} must be in 1..vocab_size-2")
    if train_shards < 1 or train_tokens < train_shards or val_tokens < 2:
        raise DataError("need --train-shards >= 1, --train-tokens >= shards and --val-tokens >= 2")
    os.makedirs(out, exist_ok=True)
    src = MarkovSource(vocab_size, branching, mean_doc_len, seed)
    # separate streams so that more training data never changes the validation tokens
    val = src.sample(val_tokens, np.random.default_rng([seed, 0]))
    write_shard(os.path.join(out, "synthetic_val_000000.bin"), val)
    rng = np.random.default_rng([seed, 1])
    per = [train_tokens // train_shards + (i < train_tokens % train_shards) for i in range(train_shards)]
    for i, n in enumerate(per):
        write_shard(os.path.join(out, f"synthetic_train_{i:06d}.bin"), src.sample(n, rng))
    meta = dict(source="sparse first-order Markov chain", vocab_size=vocab_size, bos_id=src.bos,
                branching=branching, mean_doc_len=mean_doc_len, seed=seed,
                train_tokens=train_tokens, train_shards=train_shards, val_tokens=val_tokens,
                entropy_rate_nats=src.entropy_rate(), val_oracle_loss=src.nll(val),
                uniform_loss=float(np.log(vocab_size)))
    with open(os.path.join(out, "synthetic_meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


# ---------------------------------------------------------------------------- FineWeb

def fineweb_files(num_train):
    return ["fineweb_val_000000.bin"] + [f"fineweb_train_{i:06d}.bin" for i in range(1, num_train + 1)]


def hf_download(filename, out):
    from huggingface_hub import hf_hub_download  # resumes partial downloads itself
    return hf_hub_download(repo_id=FINEWEB_REPO, filename=filename, repo_type="dataset", local_dir=out)


def download_fineweb(out, num_train=9, download=hf_download, log=print):
    """Fetch the val shard and num_train train shards; skip files already complete and
    check each header and size. `download(filename, out)` is injectable for tests."""
    os.makedirs(out, exist_ok=True)
    fix = f"python -m train.data fineweb --out {out}"
    for name in fineweb_files(num_train):
        path = os.path.join(out, name)
        if os.path.exists(path):
            try:
                n = read_header(path, fix)
                log(f"ok {path} ({n} tokens, already there)")
                continue
            except DataError:
                log(f"re-downloading {path} (incomplete or corrupt)")
                os.remove(path)
        got = download(name, out)
        if got and os.path.abspath(got) != os.path.abspath(path):
            os.replace(got, path)
        if not os.path.exists(path):
            raise DataError(f"download of {name} from {FINEWEB_REPO} produced no file {path}; retry: {fix}")
        n = read_header(path, fix)
        log(f"ok {path} ({n} tokens)")


# ---------------------------------------------------------------------------- inspect

def inspect(path, bos=None):
    n = read_header(path, "the command that made it (see python -m train.data --help)")
    tokens = read_shard(path)
    if bos is None:  # synthetic shards record their BOS; otherwise GPT-2's
        meta = os.path.join(os.path.dirname(path) or ".", "synthetic_meta.json")
        bos = json.load(open(meta))["bos_id"] if os.path.exists(meta) else 50256
    return dict(path=path, magic=MAGIC, version=VERSION, tokens=n, bytes=os.path.getsize(path),
                bos_id=bos, documents=int((tokens == bos).sum()),
                max_token=int(tokens.max()) if n else None)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise DataError(f"{message} (see: python -m train.data --help)")


def main(argv=None):
    p = OneLineParser(prog="python -m train.data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synthetic", help="seeded learnable shards with a known entropy rate")
    s.add_argument("--out", default="data/synthetic")
    s.add_argument("--vocab-size", type=int, default=256)
    s.add_argument("--train-tokens", type=int, default=1_000_000)
    s.add_argument("--train-shards", type=int, default=2)
    s.add_argument("--val-tokens", type=int, default=65536)
    s.add_argument("--branching", type=int, default=4, help="successors per token")
    s.add_argument("--mean-doc-len", type=float, default=96)
    s.add_argument("--seed", type=int, default=1234)
    fw = sub.add_parser("fineweb", help=f"download shards of {FINEWEB_REPO}")
    fw.add_argument("--out", default="data/fineweb10B")
    fw.add_argument("--num-train", type=int, default=9, help="train shards of 100M tokens")
    ins = sub.add_parser("inspect", help="header, token and document count of shards")
    ins.add_argument("paths", nargs="+")
    ins.add_argument("--bos-id", type=int, default=None)
    ins.add_argument("--out", default=None, help="write the report as JSON to this file")
    for sp in (s, fw, ins):
        sp.error = p.error
    try:
        a = p.parse_args(argv)
        if a.cmd == "synthetic":
            meta = make_synthetic(a.out, a.vocab_size, a.train_tokens, a.train_shards, a.val_tokens,
                                  a.branching, a.mean_doc_len, a.seed)
            print(f"wrote {a.train_shards} train shards ({a.train_tokens} tokens) and 1 val shard "
                  f"({a.val_tokens} tokens) to {a.out}")
            print(f"entropy rate {meta['entropy_rate_nats']:.4f} nats/token, val oracle loss "
                  f"{meta['val_oracle_loss']:.4f}, uniform {meta['uniform_loss']:.4f} "
                  f"(see {os.path.join(a.out, 'synthetic_meta.json')})")
        elif a.cmd == "fineweb":
            download_fineweb(a.out, a.num_train)
        else:
            reports = [inspect(path, a.bos_id) for path in a.paths]
            for r in reports:
                print(" ".join(f"{k}={v}" for k, v in r.items()))
            if a.out:
                with open(a.out, "w") as f:
                    json.dump(reports, f, indent=2)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
