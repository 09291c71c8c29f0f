"""Reference catalogs as data: VizieR ids, column names, bands, quality cuts.

Each :class:`CatalogSpec` says where a catalog lives (its VizieR table), which
columns hold the position and each *native* band (magnitude, error and the
optional ``u_e_`` flag that marks an unreliable error), which rows to drop
(quality cuts, known variables) and which photometric family its ``ugriz``
bands belong to (``"sdss"`` or ``"ps1"``; upper-case bands are always
Johnson-Cousins, Vega; ``G``/``BP``/``RP`` are Gaia, Vega). Requested bands
that a catalog lacks are derived in :mod:`soapd.catalogs.transforms`.

Native band names are soapd's canonical bands (``soapd.filters``), with
``BP``/``RP`` added for Gaia colours. A local file is recognised as one of
these catalogs by its table meta ``ID``/``name`` (astroquery's ``II_336_apass9``
or ``II/336/apass9``) or, failing that, by its columns (see
:func:`identify_columns`).

>>> spec("apass").vizier_id
'II/336/apass9'
>>> default_chain("r")
['refcat2', 'ps1', 'skymapper', 'apass', 'gaia_synth']
"""

from __future__ import annotations

from dataclasses import dataclass

from soapd.errors import CatalogError

__all__ = [
    "CATALOGS",
    "BandColumns",
    "CatalogSpec",
    "Cut",
    "default_chain",
    "identify_columns",
    "identify_id",
    "spec",
]


@dataclass(frozen=True, slots=True)
class BandColumns:
    """Columns of one native band: magnitude, its error, and an error-quality flag."""

    mag: str
    err: str | None = None
    #: VizieR ``u_e_`` column: non-zero means the error is a nominal value, not measured.
    err_flag: str | None = None


@dataclass(frozen=True, slots=True)
class Cut:
    """Keep rows with ``lo <= column <= hi`` (masked values pass unless ``required``)."""

    column: str
    lo: float = float("-inf")
    hi: float = float("inf")
    required: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSpec:
    """One reference catalog, described as data."""

    name: str
    title: str
    #: VizieR table id, or None for catalogs read from local files only (Landolt).
    vizier_id: str | None
    ra_col: str
    dec_col: str
    #: Native band -> its columns.
    bands: dict[str, BandColumns]
    #: Family of the lower-case ugriz(y) bands: "sdss" (SDSS-like primes) or "ps1".
    ugriz_family: str = "sdss"
    #: Column VizieR sorts by (ascending, brightest first) so a row limit keeps the best stars.
    sort_col: str = ""
    #: Quality cuts applied on reading.
    cuts: tuple[Cut, ...] = ()
    #: Column that marks known variables, the values that mean "variable" and an optional
    #: bit mask applied to integer values first.
    variable_col: str | None = None
    variable_is: tuple[str, ...] = ()
    variable_mask: int | None = None
    #: Other columns asked for (not used for photometry but kept in the cache).
    extra_cols: tuple[str, ...] = ()
    #: Table ids (meta ID or name) that identify a local file as this catalog.
    aliases: tuple[str, ...] = ()
    #: One line on the astrometric epoch / reference of positions.
    note: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column asked from VizieR (sorted and de-duplicated, position first)."""
        cols: list[str] = [self.ra_col, self.dec_col]
        for b in self.bands.values():
            cols += [c for c in (b.mag, b.err, b.err_flag) if c]
        cols += [c.column for c in self.cuts]
        if self.variable_col:
            cols.append(self.variable_col)
        cols += list(self.extra_cols)
        seen: dict[str, None] = {}
        for c in cols:
            seen.setdefault(c, None)
        return tuple(seen)


def _ugriz(fmt: str, bands: str, err: str = "e_{}") -> dict[str, BandColumns]:
    return {b: BandColumns(fmt.format(b), err.format(fmt.format(b))) for b in bands}


_APASS_BANDS = {
    "B": BandColumns("Bmag", "e_Bmag", "u_e_Bmag"),
    "V": BandColumns("Vmag", "e_Vmag", "u_e_Vmag"),
    "g": BandColumns("g'mag", "e_g'mag", "u_e_g'mag"),
    "r": BandColumns("r'mag", "e_r'mag", "u_e_r'mag"),
    "i": BandColumns("i'mag", "e_i'mag", "u_e_i'mag"),
}

_SMSS_BANDS = {b: BandColumns(f"{b}PSF", f"e_{b}PSF") for b in "griz"}


def _skymapper(name: str, release: str, vizier_id: str) -> CatalogSpec:
    """Return a SkyMapper release's spec: the releases differ only in id and title."""
    return CatalogSpec(
        name=name,
        title=f"SkyMapper Southern Survey {release}",
        vizier_id=vizier_id,
        ra_col="RAICRS",
        dec_col="DEICRS",
        bands=_SMSS_BANDS,
        ugriz_family="sdss",
        sort_col="rPSF",
        # flags < 4: no serious SExtractor flags; ClassStar > 0.5: point-like.
        cuts=(Cut("flags", hi=3), Cut("ClassStar", lo=0.5)),
        aliases=(vizier_id.replace("/", "_"), vizier_id, vizier_id.rsplit("/", 1)[0]),
        note="SkyMapper griz used as SDSS-like without a system transformation",
    )


#: Every catalog soapd knows, by name.
CATALOGS: dict[str, CatalogSpec] = {
    s.name: s
    for s in (
        CatalogSpec(
            name="apass",
            title="AAVSO Photometric All-Sky Survey DR9 (Henden+ 2016)",
            vizier_id="II/336/apass9",
            ra_col="RAJ2000",
            dec_col="DEJ2000",
            bands=_APASS_BANDS,
            ugriz_family="sdss",
            sort_col="Vmag",
            # Jordi et al. (2006) transformations are fitted over -0.3 < B-V < 1.7.
            cuts=(Cut("B-V", -0.3, 1.7),),
            extra_cols=("e_B-V", "nobs", "mobs"),
            aliases=("II_336_apass9", "II/336/apass9", "II/336"),
            note="J2000 positions from APASS itself (about 0.2-0.5 arcsec)",
        ),
        CatalogSpec(
            name="ps1",
            title="Pan-STARRS1 DR1 mean photometry (Chambers+ 2016)",
            vizier_id="II/349/ps1",
            ra_col="RAJ2000",
            dec_col="DEJ2000",
            bands=_ugriz("{}mag", "grizy"),
            ugriz_family="ps1",
            sort_col="rmag",
            # PS1 saturates at about 13-14 mag (Magnier et al. 2020, ApJS 251, 6): brighter
            # measurements are unreliable in every band.
            cuts=tuple(Cut(f"{b}mag", lo=13.5) for b in "grizy"),
            extra_cols=("Qual", "Nd"),
            aliases=("II_349_ps1", "II/349/ps1", "II/349"),
            note="PS1 positions, mean epoch about 2012",
        ),
        CatalogSpec(
            name="refcat2",
            title="ATLAS All-Sky Stellar Reference Catalog (Tonry+ 2018)",
            vizier_id="J/ApJ/867/105/refcat2",
            ra_col="RA_ICRS",
            dec_col="DE_ICRS",
            bands=_ugriz("{}mag", "griz"),
            ugriz_family="ps1",
            sort_col="rmag",
            # dupvar = Gaia DR2 variability (0 constant, 1 variable, 2 not available)
            # + 4 x duplicated_source (Tonry et al. 2018, refcat2 README).
            variable_col="dupvar",
            variable_is=("1",),
            variable_mask=3,
            extra_cols=("Gmag", "e_Gmag", "BPmag", "RPmag", "rp1", "r1"),
            aliases=("J_ApJ_867_105_refcat2", "J/ApJ/867/105/refcat2", "J/ApJ/867/105"),
            note="Gaia DR2 positions at epoch 2015.5; PS1-system g r i z",
        ),
        _skymapper("skymapper", "DR4 (Onken+ 2024)", "II/379/smssdr4"),
        _skymapper("skymapper_dr1", "DR1.1 (Wolf+ 2018)", "II/358/smss"),
        CatalogSpec(
            name="gaia_synth",
            title="Gaia DR3 synthetic photometry catalogue, GSPC (Gaia Collaboration 2023)",
            vizier_id="I/360/syntphot",
            ra_col="RA_ICRS",
            dec_col="DE_ICRS",
            bands={
                **{b: BandColumns(f"{b}mag", f"e_{b}mag") for b in "UBVRI"},
                **{b: BandColumns(f"{b}mag", f"e_{b}mag") for b in "ugriz"},
            },
            ugriz_family="sdss",
            sort_col="Vmag",
            extra_cols=("Source",),
            aliases=("I_360_syntphot", "I/360/syntphot", "I/360"),
            note="Gaia DR3 positions at epoch 2016.0; JKC Vega and SDSS AB standardised",
        ),
        CatalogSpec(
            name="gaia_dr3",
            title="Gaia DR3 main source catalogue (Gaia Collaboration 2023)",
            vizier_id="I/355/gaiadr3",
            ra_col="RA_ICRS",
            dec_col="DE_ICRS",
            bands={
                "G": BandColumns("Gmag", "e_Gmag"),
                "BP": BandColumns("BPmag", "e_BPmag"),
                "RP": BandColumns("RPmag", "e_RPmag"),
            },
            sort_col="Gmag",
            variable_col="VarFlag",
            variable_is=("VARIABLE",),
            extra_cols=("Source", "RUWE"),
            aliases=("I_355_gaiadr3", "I/355/gaiadr3", "I/355"),
            note="Gaia DR3 positions at epoch 2016.0; G, BP, RP on the Vega system",
        ),
        CatalogSpec(
            name="landolt",
            title="Landolt (1992) UBVRI standard stars (AJ 104, 340)",
            vizier_id=None,
            ra_col="RAJ2000",
            dec_col="DEJ2000",
            bands={b: BandColumns(f"{b}mag", f"e_{b}mag") for b in "UBVRI"},
            sort_col="Vmag",
            aliases=("II_183A_table2", "II/183A", "landolt1992"),
            note="Local file only (IRAF nlandolt.dat or VizieR II/183A); positions to 1 arcsec",
        ),
    )
}

#: Built-in fallback chains: the best catalog first.
_CHAINS: dict[str, list[str]] = {
    "u": ["gaia_synth", "skymapper"],
    "g": ["refcat2", "ps1", "skymapper", "apass", "gaia_synth"],
    "r": ["refcat2", "ps1", "skymapper", "apass", "gaia_synth"],
    "i": ["refcat2", "ps1", "skymapper", "apass", "gaia_synth"],
    "z": ["refcat2", "ps1", "skymapper", "gaia_synth"],
    "y": ["ps1"],
    "U": ["landolt", "gaia_synth"],
    "B": ["landolt", "apass", "gaia_synth", "refcat2", "ps1"],
    "V": ["landolt", "apass", "gaia_synth", "refcat2", "ps1"],
    "R": ["landolt", "gaia_synth", "refcat2", "ps1", "apass"],
    "I": ["landolt", "gaia_synth", "refcat2", "ps1", "apass"],
    "G": ["gaia_dr3"],
}


def spec(name: str) -> CatalogSpec:
    """Return the catalog called ``name``; raise CatalogError naming the known ones."""
    try:
        return CATALOGS[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGS))
        raise CatalogError(f"unknown catalog {name!r}; known catalogs: {known}") from None


def default_chain(band: str) -> list[str]:
    """Return the built-in fallback chain for canonical ``band`` (empty if none)."""
    return list(_CHAINS.get(band, []))


def identify_id(table_id: str) -> CatalogSpec | None:
    """Return the catalog whose alias is ``table_id`` (case-insensitive), else None."""
    key = table_id.strip().lower()
    for s in CATALOGS.values():
        if any(key == a.lower() for a in s.aliases):
            return s
    return None


def identify_columns(colnames: list[str]) -> CatalogSpec | None:
    """Return the catalog whose position and band columns are all in ``colnames``.

    Used for local files without an ``ID`` in their meta. The most specific
    match (most band columns present) wins; ties go to registry order.
    """
    names = set(colnames)
    best: tuple[int, CatalogSpec] | None = None
    for s in CATALOGS.values():
        if s.ra_col not in names or s.dec_col not in names:
            continue
        n = sum(b.mag in names for b in s.bands.values())
        if n == len(s.bands) and (best is None or n > best[0]):
            best = (n, s)
    return None if best is None else best[1]
