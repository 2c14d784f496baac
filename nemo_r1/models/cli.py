"""`nemo-r1 convert hf-to-mcore | mcore-to-hf`: parse-free handler over the importable converters."""

from __future__ import annotations

import argparse
import sys

from nemo_r1.models.convert import convert_hf_to_mcore, convert_mcore_to_hf
from nemo_r1.models.pretrained import resolve_hf_path


def convert_main(args: argparse.Namespace) -> int:
    """args.direction: hf-to-mcore (--hf --out --tp --pp [--dtype]) or mcore-to-hf (--ckpt --out [--dtype])."""
    try:
        if args.direction == "hf-to-mcore":
            out = convert_hf_to_mcore(resolve_hf_path(args.hf), args.out, tp=args.tp, pp=args.pp,
                                      dtype=getattr(args, "dtype", None) or "float32")
        elif args.direction == "mcore-to-hf":
            out = convert_mcore_to_hf(args.ckpt, args.out, dtype=getattr(args, "dtype", None))
        else:
            raise ValueError(f"unknown convert direction {args.direction!r} (hf-to-mcore, mcore-to-hf)")
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"nemo-r1 convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
