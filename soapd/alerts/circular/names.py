"""GCN event names and subject rules, as GCN's own code has them.

:func:`canonical_event_name` applies the subject patterns of ``parseEventFromSubject``
and :func:`subject_is_valid` the ``validSubjectKeywords`` check of
nasa-gcn/gcn.nasa.gov at commit 11d32bd4 (``app/routes/circulars/circulars.lib.ts``):
a subject must hold one of the keywords, and GCN files a circular under the event
whose name it finds first at the start of the subject.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["VALID_SUBJECT_KEYWORDS", "canonical_event_name", "subject_is_valid"]

# GCN's subject patterns (circulars.lib.ts @ 11d32bd4), in its order, with the
# canonical spelling each produces.
_EVENT_PATTERNS: tuple[tuple[str, Any], ...] = (
    (r"GRB[.\s_-]*(\d{6}(?:[a-z]|\.[0-9]+)?)", lambda m: f"GRB {m[1].upper()}"),
    (r"SGR[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR {m[1].upper()}"),
    (r"SGR[.\s_-]*Swift[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR Swift {m[1].upper()}"),
    (r"IceCube[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-{m[1].upper()}"),
    (r"IceCube[.\s_-]*Cascade[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-Cascade {m[1].upper()}"),
    (r"ZTF[.\s_-]*(\d{2}[a-z]*)", lambda m: f"ZTF{m[1].lower()}"),
    (r"HAWC[.\s_-]*(\d{6}A)", lambda m: f"HAWC-{m[1].upper()}"),
    (
        r"((?:LIGO|Virgo|KAGRA)(?:[/-](?:LIGO|Virgo|KAGRA))*)[-_ \s]?(S|G|GW)(\d{5,}[a-z]*)",
        lambda m: f"{m[1].upper().replace('VIRGO', 'Virgo')} {m[2].upper()}{m[3].lower()}",
    ),
    (r"ANTARES[.\s_-]*(\d{6}[a-z])", lambda m: f"ANTARES {m[1]}".upper()),
    (
        r"Baksan\sNeutrino\sObservatory\sAlert[.\s_-]*(\d{6}.\d{2})",
        lambda m: f"Baksan Neutrino Observatory Alert {m[1]}",
    ),
    (r"EP[.\s_-]*(\d{6}[a-z])", lambda m: f"EP{m[1].lower()}"),
    (
        r"SN[.\s_-]*(\d{4}[a-z]*)",
        lambda m: f"SN {m[1].upper() if len(m[1]) == 5 else m[1].lower()}",
    ),
    (r"GW[.\s_-]*(\d{6})", lambda m: f"GW{m[1]}"),
    (r"FRB[.\s_-]*(\d{8}[a-z]|\d{6}[a-z]?)", lambda m: f"FRB {m[1]}".upper()),
    (r"sb[.\s_-]*(\d{8})", lambda m: f"sb{m[1]}"),
    (r"XRF[.\s_-]*(\d{6}[a-z]?)", lambda m: f"XRF {m[1].upper()}"),
    (r"AT[.\s_-]*(\d{4}[a-z]+)", lambda m: f"AT{m[1].lower()}"),
)

#: Words of which GCN requires one in a subject (case-insensitive substring match).
VALID_SUBJECT_KEYWORDS = (
    "AGILE", "ALMA", "AMON", "ANTARES", "AXP", "Baksan Neutrino Observatory Alert", "CALET",
    "Chandra", "COLIBRI", "EP", "Fermi", "FRB", "FXT", "GOTO", "GRANDMA", "GRB", "GW", "HAWC",
    "HST", "IBAS", "IceCube", "INTEGRAL", "IPN", "JCMT", "KAGRA", "KamLAND", "KONUS", "LIGO",
    "LOFAR", "LVC", "LVK", "LXT", "MAGIC", "MASTER", "MAXI", "Nova", "NuEM", "Pan-STARRS",
    "POLAR", "RATIR", "SDSS", "SFXT", "SGR", "SN", "Super-Kamiokande", "Supernova", "Suzaku",
    "SVOM", "Swift", "transient", "VLA", "VLBI", "XRB", "XRF", "XRT", "XTR", "Virgo", "ZTF",
)  # fmt: skip

#: Subjects GCN takes for auto-replies (a subset that a generated subject could hit).
_AUTO_REPLY = ("re: ", "fwd: ", " r: ", " ris: ", "subject:", "auto reply", "autoreply")


def canonical_event_name(name: str) -> str | None:
    """Return GCN's canonical event name found in ``name`` (as GCN parses subjects), or None.

    A match at the start of ``name`` wins over one inside it, as on GCN.

    >>> canonical_event_name("GRB261124a"), canonical_event_name("EP 250101A")
    ('GRB 261124A', 'EP250101a')
    >>> canonical_event_name("DEMO-RISER") is None
    True
    """
    for anchored in (True, False):
        for pattern, normalise in _EVENT_PATTERNS:
            rx = re.compile(("^" if anchored else "") + pattern, re.IGNORECASE)
            m = rx.match(name) if anchored else rx.search(name)
            if m:
                return str(normalise(m))
    return None


def subject_is_valid(subject: str) -> bool:
    """Return True when GCN would accept ``subject`` (an allowed keyword, not an auto-reply)."""
    low = subject.lower()
    if any(a in low for a in _AUTO_REPLY):
        return False
    return any(k.lower() in low for k in VALID_SUBJECT_KEYWORDS)
