"""Photometric system transformations with full error propagation.

* **PS1 -> SDSS**: Tonry et al. 2012, ApJ 750, 99, table 6 (quadratic in
  x = (g-r)_P1): ``m_SDSS = m_P1 + A0 + A1 x + A2 x^2``, with the fit's rms
  scatter as a systematic error per star.
* **SDSS -> Johnson-Cousins**: Jordi, Grebel & Ammon 2006, A&A 460, 339,
  table 3 ("all stars"):

  ====  ==============================================  ===========================
  band  relation                                        inputs
  ====  ==============================================  ===========================
  B     B - g = 0.313(+-0.003) (g-r) + 0.219(+-0.002)   g, r
  V     V - g = -0.565(+-0.001) (g-r) - 0.016(+-0.001)  g, r
  R     R - r = -0.153(+-0.003) (r-i) - 0.117(+-0.003)  r, i
  I     I - i = -0.386(+-0.004) (i-z) - 0.397(+-0.001)  i, z (preferred)
  I     R - I = 0.930(+-0.005) (r-i) + 0.259(+-0.002)   r, i (when there is no z)
  U     U - B = 0.79(+-0.02) (u-g) - 0.93(+-0.02)       u, g, r
  ====  ==============================================  ===========================

Errors are propagated exactly for these (locally linear) relations: every
derived magnitude carries its Jacobian with respect to the independent inputs
(the catalog's magnitudes of that star, each coefficient, each fit's rms), so
the variance is ``sum_k (dM/dx_k)^2 sigma_k^2``. This includes the covariance
term skynetsoap dropped (bug B9): for ``M = m1 + a (m1 - m2) + b`` the variance
is ``(1+a)^2 s1^2 + a^2 s2^2 + (m1-m2)^2 sa^2 + sb^2``, and a colour built from
two derived bands (``B - V`` from g and r) has the right, correlated error.

>>> import numpy as np
>>> p = Photometry({"g": np.array([15.0]), "r": np.array([14.5])},
...                {"g": np.array([0.02]), "r": np.array([0.02])}, family="sdss")
>>> v = p.derive("V")
>>> round(float(v.mag[0]), 4), round(float(p.error(v)[0]), 4)
(14.7015, 0.0143)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["COLOR_OF_BAND", "Derived", "Photometry", "Relation"]

FloatArray = npt.NDArray[np.float64]
Any_ = float | FloatArray


@dataclass(frozen=True, slots=True)
class Relation:
    """``M = base + c0 + c1 x + c2 x^2`` with ``x = first - second`` (coefficient errors)."""

    name: str
    c0: float
    c1: float
    c2: float = 0.0
    s0: float = 0.0
    s1: float = 0.0
    s2: float = 0.0
    #: Scatter of the fit about the relation (mag), added per star.
    rms: float = 0.0


#: Tonry et al. (2012) table 6, PS1 -> SDSS, quadratic in (g-r)_P1 (SDSS band -> relation).
TONRY_PS1_TO_SDSS: dict[str, Relation] = {
    "g": Relation("tonry2012_g", 0.013, 0.145, 0.019, rms=0.008),
    "r": Relation("tonry2012_r", -0.001, 0.004, 0.007, rms=0.004),
    "i": Relation("tonry2012_i", -0.005, 0.011, 0.010, rms=0.004),
    "z": Relation("tonry2012_z", 0.013, -0.039, -0.012, rms=0.010),
}

#: Jordi et al. (2006) table 3, all stars.
JORDI_B = Relation("jordi2006_B-g", 0.219, 0.313, s0=0.002, s1=0.003)
JORDI_V = Relation("jordi2006_V-g", -0.016, -0.565, s0=0.001, s1=0.001)
JORDI_R = Relation("jordi2006_R-r", -0.117, -0.153, s0=0.003, s1=0.003)
JORDI_I_IZ = Relation("jordi2006_I-i", -0.397, -0.386, s0=0.001, s1=0.004)
#: I = R - (R-I): the R-I relation with signs flipped (applied on top of R).
JORDI_I_RI = Relation("jordi2006_R-I", -0.259, -0.930, s0=0.002, s1=0.005)
JORDI_U = Relation("jordi2006_U-B", -0.93, 0.79, s0=0.02, s1=0.02)

#: The colour (first, second) used for colour terms in each band, in that band's system.
COLOR_OF_BAND: dict[str, tuple[str, str]] = {
    "u": ("u", "g"),
    "g": ("g", "r"),
    "r": ("g", "r"),
    "i": ("r", "i"),
    "z": ("i", "z"),
    "y": ("z", "y"),
    "U": ("U", "B"),
    "B": ("B", "V"),
    "V": ("B", "V"),
    "R": ("V", "R"),
    "I": ("R", "I"),
    "G": ("BP", "RP"),
}


@dataclass(frozen=True, slots=True)
class Derived:
    """A magnitude per star and its Jacobian with respect to independent inputs."""

    mag: FloatArray
    #: input name -> d mag / d input, per star. Inputs are catalog bands (``cat:g``) or
    #: coefficient/rms terms of a relation (``tonry2012_g:c1``).
    jac: dict[str, FloatArray]
    #: How it was obtained, e.g. "r" or "R = Jordi2006(r, i)".
    how: str

    def __sub__(self, other: Derived) -> Derived:
        """Return self - other (a colour), Jacobians combined."""
        return Derived(
            self.mag - other.mag,
            _add_jac(self.jac, other.jac, 1.0, -1.0),
            f"({self.how}) - ({other.how})",
        )


def _add_jac(
    a: dict[str, FloatArray], b: dict[str, FloatArray], wa: Any_, wb: Any_
) -> dict[str, FloatArray]:
    out: dict[str, FloatArray] = {k: wa * v for k, v in a.items()}
    for k, v in b.items():
        out[k] = out[k] + wb * v if k in out else wb * v
    return out


class Photometry:
    """A catalog's native magnitudes for a set of stars, and what can be derived from them.

    Parameters
    ----------
    mags, errs
        Native band -> magnitude / 1-sigma error per star (mag; NaN where missing).
    family
        Family of the catalog's lower-case bands: ``"sdss"`` or ``"ps1"``.
    """

    def __init__(
        self, mags: dict[str, FloatArray], errs: dict[str, FloatArray], *, family: str
    ) -> None:
        """Store the native photometry."""
        self.mags = mags
        self.errs = errs
        self.family = family
        self._sigma: dict[str, float] = {}
        self._memo: dict[str, Derived | None] = {}

    def _native(self, band: str) -> Derived | None:
        if band not in self.mags:
            return None
        m = np.asarray(self.mags[band], dtype=np.float64)
        return Derived(m, {f"cat:{band}": np.ones_like(m)}, band)

    def _apply(self, base: Derived, a: Derived, b: Derived, rel: Relation, how: str) -> Derived:
        """Return ``base + c0 + c1 x + c2 x^2`` with x = a - b, Jacobian included."""
        x = a.mag - b.mag
        slope = rel.c1 + 2.0 * rel.c2 * x
        jac = _add_jac(base.jac, _add_jac(a.jac, b.jac, 1.0, -1.0), 1.0, slope)
        ones = np.ones_like(x)
        for suffix, deriv, sigma in (
            ("c0", ones, rel.s0),
            ("c1", x, rel.s1),
            ("c2", x * x, rel.s2),
            ("rms", ones, rel.rms),
        ):
            if sigma > 0:
                key = f"{rel.name}:{suffix}"
                self._sigma[key] = sigma
                jac[key] = jac[key] + deriv if key in jac else deriv
        mag = base.mag + rel.c0 + rel.c1 * x + rel.c2 * x * x
        return Derived(mag, jac, how)

    def _sdss(self, band: str) -> Derived | None:
        """Return the SDSS-like magnitude in lower-case ``band``."""
        if self.family == "sdss":
            return self._native(band)
        rel = TONRY_PS1_TO_SDSS.get(band)
        base, g, r = self._native(band), self._native("g"), self._native("r")
        if rel is None or base is None or g is None or r is None:
            return None
        return self._apply(base, g, r, rel, f"{band} = Tonry2012({band}_P1, g_P1-r_P1)")

    def derive(self, band: str) -> Derived | None:
        """Return ``band`` on its standard system (SDSS-like ugriz, JC UBVRI, Gaia), or None."""
        if band not in self._memo:
            self._memo[band] = self._derive(band)
        return self._memo[band]

    def _derive(self, band: str) -> Derived | None:
        if band in ("G", "BP", "RP") or band in "UBVRI" or band == "y":
            direct = self._native(band)
            if direct is not None or band not in "UBVRI":
                return direct
            return self._jordi(band)
        if band in "ugriz" and len(band) == 1:
            return self._sdss(band)
        return None

    def _jordi(self, band: str) -> Derived | None:
        need = {"B": "gr", "V": "gr", "R": "ri", "I": "ri", "U": "ugr"}[band]
        s = {b: self._sdss(b) for b in "ugriz"}
        if any(s[b] is None for b in need):
            return None
        g, r, i, u, z = s["g"], s["r"], s["i"], s["u"], s["z"]
        if band in "BV":
            assert g is not None
            assert r is not None
            rel = JORDI_B if band == "B" else JORDI_V
            return self._apply(g, g, r, rel, f"{band} = Jordi2006(g, r)")
        if band in "RI":
            assert r is not None
            assert i is not None
            if band == "R":
                return self._apply(r, r, i, JORDI_R, "R = Jordi2006(r, i)")
            if z is not None:
                return self._apply(i, i, z, JORDI_I_IZ, "I = Jordi2006(i, z)")
            R = self.derive("R")
            assert R is not None
            return self._apply(R, r, i, JORDI_I_RI, "I = Jordi2006(r, i) via R-I")
        B = self.derive("B")
        assert u is not None
        assert g is not None
        assert B is not None
        return self._apply(B, u, g, JORDI_U, "U = Jordi2006(u, g, r)")

    def color(self, band: str) -> tuple[Derived | None, str]:
        """Return the colour used for ``band``'s colour term (and its name), or (None, name)."""
        pair = COLOR_OF_BAND.get(band)
        if pair is None:
            return None, ""
        a, b = self.derive(pair[0]), self.derive(pair[1])
        name = f"{pair[0]}-{pair[1]}"
        if a is None or b is None:
            return None, name
        return a - b, name

    def error(self, d: Derived) -> FloatArray:
        """Return the 1-sigma error of ``d`` per star (mag), correlations included."""
        var = np.zeros_like(d.mag)
        for key, deriv in d.jac.items():
            if key.startswith("cat:"):
                sigma: Any_ = np.asarray(self.errs[key[4:]], dtype=np.float64)
            else:
                sigma = self._sigma[key]
            var = var + (deriv * sigma) ** 2
        return np.sqrt(var)
