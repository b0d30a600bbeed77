# The two set-up commands of README.md: `make demo` and `make test`.
# Both install what they need (Debian packages when run as root, a virtualenv
# for the Python package) and are safe to run again.

PG_MAJOR ?= 15
VENV     ?= .venv
PYTHON   ?= python3
# Empty: pgperfmon's default home (/var/lib/pgperfmon as root, else ~/.local/share/pgperfmon),
# which the server's unprivileged account can always reach.
DEMO_DIR ?=

DEB_PACKAGES = postgresql-$(PG_MAJOR) postgresql-contrib postgresql-$(PG_MAJOR)-cron \
               postgresql-plpython3-$(PG_MAJOR) postgresql-$(PG_MAJOR)-hypopg \
               python3-numpy python3-sklearn python3-psutil \
               chromium

.PHONY: deps system-deps python-deps demo test lint bench soak clean

deps: system-deps python-deps

system-deps:
	@PG_MAJOR=$(PG_MAJOR) ./scripts/install-system-packages $(DEB_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

python-deps: $(VENV)/.installed

demo: deps
	$(VENV)/bin/pgperfmon demo $(if $(DEMO_DIR),--data-dir $(DEMO_DIR))

test: deps
	$(VENV)/bin/ruff check installer plpython tests bench
	# Two workers (this machine's two cores), each with its own throwaway cluster; a test
	# file runs whole on one worker, so its module-scoped database and order are kept.
	$(VENV)/bin/pytest -n 2 --dist loadfile

# The soak (bench/soak.py, 30 minutes of load by default) is run on its own: make soak.
# bench/anomaly_heldout.py needs labelled series from outside this repository (its docstring).
bench: deps
	@for b in bench/*.py; do case "$$b" in bench/soak.py|bench/anomaly_heldout.py) continue;; esac; \
	    echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

soak: deps
	$(VENV)/bin/python bench/soak.py

clean:
	-$(VENV)/bin/pgperfmon down $(if $(DEMO_DIR),--data-dir $(DEMO_DIR)) 2>/dev/null
	rm -rf $(VENV) test-artifacts
