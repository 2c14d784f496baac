# Two commands for users: `make demo` and `make test`. Both (re)create .venv idempotently.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install slurm demo distill test lint bench clean-venv

install: $(STAMP)

# The stamp depends on pyproject.toml and this script, so a second `make install` on a ready
# venv is a no-op (seconds); editing dependencies triggers a refresh.
$(STAMP): pyproject.toml tools/install_venv.sh
	PY=$(PY) VENV=$(VENV) bash tools/install_venv.sh
	touch $(STAMP)

demo: install
	$(VENV)/bin/nemo-r1 demo

# GSM8K distillation SFT on CPU with base and student evals (about 50 minutes on 2 cores; README)
distill: install
	bash tools/distill_gsm8k.sh

# The launcher tests run a real Slurm cluster on this host. Checked first: as root it is installed
# (once, idempotent); without the rights to install, this stops in a second with the command to run.
slurm:
	bash tools/install_slurm.sh

test: slurm install
	$(VENV)/bin/ruff check nemo_r1 launchers tools tests
	$(VENV)/bin/python -m pytest -q -ra --timeout=1200 --durations=15 tests

lint: install
	$(VENV)/bin/ruff check nemo_r1 launchers tools tests

clean-venv:
	rm -rf $(VENV)
