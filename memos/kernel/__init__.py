"""The kernel: operation log, ACL, lifecycle, indexes. :func:`open_kernel` builds one from settings."""

from memos.kernel.boot import open_kernel
from memos.kernel.kernel import Kernel, NewMemory, new_memory

__all__ = ["Kernel", "NewMemory", "new_memory", "open_kernel"]
