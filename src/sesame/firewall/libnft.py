"""A minimal binding of libnftables, the library behind the ``nft`` command.

Commands are nft's own language, handed over as one buffer: the library applies a
buffer as one atomic transaction. No shell and no subprocess; values are
substituted only after sesame has validated them (addresses, numbers, names).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from typing import Any

from sesame.errors import FirewallError

_OUTPUT_JSON = 1 << 4


class Nft:
    """One libnftables context (not thread-safe; sesame uses it from one thread)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise FirewallError(f"cannot load libnftables ({exc}); install nftables") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for func in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            func.argtypes = [ctypes.c_void_p]
            func.restype = ctypes.c_int
        for func in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            func.argtypes = [ctypes.c_void_p]
            func.restype = ctypes.c_char_p
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise FirewallError("libnftables could not create a context")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def run(self, commands: str) -> str:
        """Apply ``commands`` atomically; return nft's output or raise FirewallError."""
        return self._run(commands, json_output=False)

    def json(self, command: str) -> list[dict[str, Any]]:
        """Run a ``list`` command and return the ``nftables`` array of its JSON."""
        out = self._run(command, json_output=True)
        items = json.loads(out).get("nftables", []) if out.strip() else []
        return [item for item in items if isinstance(item, dict)]

    def _run(self, commands: str, *, json_output: bool) -> str:
        lib, ctx = self._lib, self._ctx
        flags = lib.nft_ctx_output_get_flags(ctx)
        wanted = flags | _OUTPUT_JSON if json_output else flags & ~_OUTPUT_JSON
        lib.nft_ctx_output_set_flags(ctx, wanted)
        rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise FirewallError(err.strip() or f"nft failed ({rc})")
        return out
