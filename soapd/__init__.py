"""soapd: the photometry daemon for the Skynet robotic telescope network.

``from soapd import Soap`` gives the Python API (:class:`soapd.api.soap.Soap`) and
``from soapd import PhotometryResult`` its result table. Both are imported lazily
(a module ``__getattr__``), so ``import soapd`` stays light: no numpy, astropy
or matplotlib until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "NotCoveredWarning",
    "PhotometryResult",
    "PhotometryTarget",
    "SOAPConfig",
    "Soap",
    "TargetLightcurve",
    "UnknownObservationWarning",
    "__version__",
    "load_config",
]

if TYPE_CHECKING:
    from soapd.api.compat import NotCoveredWarning, UnknownObservationWarning
    from soapd.api.results import PhotometryResult, PhotometryTarget, TargetLightcurve
    from soapd.api.soap import Soap
    from soapd.config import SOAPConfig, load_config

#: Public names served lazily: name -> module that defines it.
_LAZY = {
    "Soap": "soapd.api.soap",
    "PhotometryResult": "soapd.api.results",
    "TargetLightcurve": "soapd.api.results",
    "PhotometryTarget": "soapd.api.results",
    "NotCoveredWarning": "soapd.api.compat",
    "UnknownObservationWarning": "soapd.api.compat",
    "load_config": "soapd.config",
    "SOAPConfig": "soapd.config",
}


def __getattr__(name: str) -> Any:
    """Import the module behind a lazy public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'soapd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))
