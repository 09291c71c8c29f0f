"""Filter names: the alias table, photometric systems and AB-Vega offsets.

Skynet and other observatories name filters in many ways (``rprime``, ``r'``,
``SDSS r``, ``Rc``, ``Open``). :func:`normalise_filter` maps each to one
canonical band: ``u g r i z y`` (SDSS/PS1-like, AB), ``U B V R I`` (Johnson-
Cousins, Vega), ``G`` (Gaia, Vega), ``Open`` for unfiltered frames
(Open/Clear/Lum/none) and the name itself, unchanged, for anything else
(narrow bands such as ``Halpha``).

>>> normalise_filter("rprime"), normalise_filter("Rc"), normalise_filter("clear")
('r', 'R', 'Open')
>>> mag_system("V"), mag_system("g"), mag_system("Open")
('Vega', 'AB', 'none')
>>> round(vega_to_ab("V", 15.0), 2)
15.02
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AB_MINUS_VEGA",
    "UNFILTERED",
    "ab_to_vega",
    "is_unfiltered",
    "mag_system",
    "normalise_filter",
    "vega_to_ab",
]

#: The canonical name of unfiltered frames.
UNFILTERED = "Open"

_ALIASES: dict[str, str] = {}
for _band in "ugrizy":
    for _alias in (
        _band,
        f"{_band}prime",
        f"{_band}'",
        f"sdss{_band}",
        f"sdss-{_band}",
        f"sdss_{_band}",
        f"sdss {_band}",
        f"{_band}p",
        f"{_band}sdss",
        f"{_band}_sdss",
        f"ps1-{_band}",
        f"ps1_{_band}",
        f"{_band}_p1",
        f"{_band}p1",
    ):
        _ALIASES[_alias.lower()] = _band
for _band in "UBVRI":
    for _alias in (
        f"johnson-{_band}",
        f"johnson_{_band}",
        f"johnson {_band}",
        f"bessell-{_band}",
        f"bessell_{_band}",
        f"bessell {_band}",
        f"{_band}j",
        f"{_band}_j",
    ):
        _ALIASES[_alias.lower()] = _band
_ALIASES.update(
    {
        "rc": "R",
        "ic": "I",
        "r_c": "R",
        "i_c": "I",
        "cousins-r": "R",
        "cousins-i": "I",
        "cousins r": "R",
        "cousins i": "I",
    }
)
for _alias in (
    "open",
    "clear",
    "lum",
    "luminance",
    "l",
    "none",
    "no filter",
    "nofilter",
    "unfiltered",
    "c",
    "cr",
    "cv",
    "w",
    "blank",
    "empty",
    "exop",
):
    _ALIASES[_alias] = UNFILTERED
for _alias in ("g_gaia", "gaia-g", "gaia_g", "gaiag", "gaia g"):
    _ALIASES[_alias] = "G"
for _alias in ("halpha", "h-alpha", "ha", "h_alpha", "h alpha"):
    _ALIASES[_alias] = "Halpha"
for _alias in ("oiii", "o-iii", "o3", "[oiii]"):
    _ALIASES[_alias] = "OIII"
for _alias in ("sii", "s-ii", "s2", "[sii]"):
    _ALIASES[_alias] = "SII"

_SYSTEMS: dict[str, Literal["AB", "Vega"]] = {
    **dict.fromkeys("ugrizy", "AB"),
    **dict.fromkeys("UBVRI", "Vega"),
    "G": "Vega",
}

#: m_AB - m_Vega per band (Blanton & Roweis 2007, AJ 133, 734, table 1; Gaia G from the
#: Gaia EDR3 photometric zero points, Riello et al. 2021: 25.8010 - 25.6874).
AB_MINUS_VEGA: dict[str, float] = {
    "U": 0.79,
    "B": -0.09,
    "V": 0.02,
    "R": 0.21,
    "I": 0.45,
    "u": 0.91,
    "g": -0.08,
    "r": 0.16,
    "i": 0.37,
    "z": 0.54,
    "y": 0.634,
    "G": 0.1136,
}


def normalise_filter(name: str | None) -> str:
    """Return the canonical band of a filter name (see the module docstring)."""
    if name is None:
        return UNFILTERED
    stripped = str(name).strip()
    if stripped in _SYSTEMS:
        # Canonical names are case-sensitive: "R" is Johnson-Cousins R, "r" is SDSS r.
        return stripped
    key = " ".join(stripped.split()).lower()
    if not key:
        return UNFILTERED
    if key in _ALIASES:
        return _ALIASES[key]
    return stripped


def is_unfiltered(band: str) -> bool:
    """Return True for the canonical unfiltered band."""
    return band == UNFILTERED


def mag_system(band: str) -> Literal["AB", "Vega", "none"]:
    """Return the natural magnitude system of a canonical band ("none" if it has none)."""
    return _SYSTEMS.get(band, "none")


def vega_to_ab(band: str, mag: float) -> float:
    """Return the AB magnitude of a Vega magnitude in ``band``; KeyError if unknown."""
    return mag + AB_MINUS_VEGA[band]


def ab_to_vega(band: str, mag: float) -> float:
    """Return the Vega magnitude of an AB magnitude in ``band``; KeyError if unknown."""
    return mag - AB_MINUS_VEGA[band]
