"""The samples file eval writes lives with the generation layer (`nemo_r1.rollout.store`), which
`nemo-r1 generate` shares; this name stays for scripts that import it from eval."""

from nemo_r1.rollout.store import SampleStore, atomic_write_text

__all__ = ["SampleStore", "atomic_write_text"]
