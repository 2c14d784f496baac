"""Convert the embedded SmolLM2-135M-Instruct GGUF to a plain HF checkpoint (once) and print its path."""

import argparse

from nemo_r1.embedded import ensure_smollm2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="target dir (default: $NEMO_R1_CACHE/smollm2-135m-instruct)")
    print(ensure_smollm2(ap.parse_args().out))


if __name__ == "__main__":
    main()
