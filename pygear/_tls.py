"""What TLS the loaded libgearman can do (placeholder until the TLS work lands)."""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from . import _lib
from .errors import NotSupported


def features() -> Dict[str, Any]:
    _lib.load()
    return {"version": _lib.version, "tls_client": False, "tls_worker": False}


def require(kind: str) -> None:
    raise NotSupported("TLS for %ss is not supported by the loaded libgearman (%s)"
                       % (kind, _lib.dll_file))


def ssl_files(ca_file: Optional[str], certificate: Optional[str],
              key: Optional[str]) -> Tuple[Optional[bytes], Optional[bytes], Optional[bytes]]:
    out = []
    for name, path in (("ca_file", ca_file), ("certificate", certificate), ("key", key)):
        if path is None:
            out.append(None)
            continue
        if not isinstance(path, str):
            raise TypeError("%s must be a path (str)" % name)
        if not os.path.isfile(path):
            raise FileNotFoundError("%s %r does not exist" % (name, path))
        out.append(os.fsencode(path))
    return out[0], out[1], out[2]
