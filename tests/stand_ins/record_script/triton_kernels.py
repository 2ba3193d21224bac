# The stand-in of a record's kernel file: the figures the fake script logs.
MS_PER_STEP = 61.3


def final_loss(steps: int, seed: int) -> float:
    # fewer steps, a little higher loss; a spread of a few 1e-4 from run to run
    return 3.2700 + 0.00004 * (1600 - steps) + 0.0003 * ((seed * 7) % 5 - 2)
