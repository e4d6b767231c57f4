"""First-party storage backends, vector indexes and blob stores, registered through the ``memos`` entry-point group."""
