"""Lattice geometry: the zone map, long-lived plasma cell niches, homing directions and the
neighbourhoods, in one object that the engine, the Mesa reference and the figures share.

Sites are indexed ``y * L + x``. Cells see their 8 Moore neighbours (direction ``d`` is the
offset ``(DX[d], DY[d])``, the order the kernels use); molecules diffuse between the 4 von
Neumann neighbours. Nothing wraps around: a site on the border has fewer neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from immunesim.model.params import ZONE_CODE, ZONE_NAMES
from immunesim.rng import S_NICHE, site_keys, threshold
from immunesim.scenario import Scenario, ScenarioError

#: Moore neighbourhood offsets, direction index 0..7 (:mod:`immunesim.kernels.common`).
DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int32)
DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int32)


@dataclass(frozen=True)
class Geometry:
    """The lattice of a run.

    Attributes:
        L: sites per side.
        zone: uint8[L, L] zone code per site (row ``y``, column ``x``).
        niche: uint8[L, L], 1 on a long-lived plasma cell niche (marrow only).
        toward: uint8[3, L*L] the Moore steps toward the nearest site of each zone, as a
            bit mask (:func:`homing_directions`; 0 inside it or where it does not exist).
    """

    L: int
    zone: np.ndarray
    niche: np.ndarray
    toward: np.ndarray

    @classmethod
    def of(cls, s: Scenario, seed: int) -> Geometry:
        """The lattice a scenario describes (niches drawn from the seed)."""
        zone, niche = build_zones(s, seed)
        return cls(s.lattice.size, zone, niche, homing_directions(zone))

    @property
    def n_sites(self) -> int:
        return self.L * self.L

    def mask(self, zone: str) -> np.ndarray:
        """bool[L*L]: the sites of a zone (``"marrow"``, ``"lymphoid"``, ``"tissue"``)."""
        return self.zone.reshape(-1) == ZONE_CODE[zone]

    def count(self, zone: str) -> int:
        """Number of sites of a zone."""
        return int(np.count_nonzero(self.mask(zone)))

    def von_neumann_neighbours(self) -> np.ndarray:
        """int64[L, L]: how many of its 4 von Neumann neighbours each site has (2 to 4)."""
        inside = np.full(self.L, 2, np.int64)
        inside[[0, -1]] = 1
        return inside[:, None] + inside[None, :]


def build_zones(s: Scenario, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Zone map ``uint8[L, L]`` and niche flags ``uint8[L, L]`` of a scenario."""
    L = s.lattice.size
    z = s.lattice.zones
    if z.layout == "bands":  # one anatomical unit of bands, repeated across the lattice
        unit = z.unit_sites
        xs = (np.arange(L) % unit + 0.5) / unit
        col = np.where(xs < z.marrow, 0, np.where(xs < z.marrow + z.lymphoid, 1, 2))
        zone = np.broadcast_to(col.astype(np.uint8), (L, L)).copy()
    else:
        path = Path(z.file or "")
        try:
            zone = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ScenarioError(
                path, "lattice.zones.file", f"a readable .npy array ({exc})"
            ) from None
        if zone.shape != (L, L) or not np.isin(zone, (0, 1, 2)).all():
            raise ScenarioError(
                path,
                "lattice.zones.file",
                f"an array of shape ({L}, {L}) holding only 0, 1, 2 (got shape {zone.shape})",
            )
        zone = zone.astype(np.uint8)
    keys = np.empty(L * L, np.uint64)
    site_keys(seed, 0, S_NICHE, L * L, keys)
    niche = (zone.reshape(-1) == 0) & ((keys >> np.uint64(11)) < threshold(z.niche_fraction))
    return zone, niche.reshape(L, L).astype(np.uint8)


def homing_directions(zone: np.ndarray) -> np.ndarray:
    """For each zone, the Moore steps that bring a cell closest to that zone.

    Args:
        zone: uint8[L, L] zone map.

    Returns:
        uint8[3, L*L]: bit ``d`` set when the neighbour in direction ``d`` is nearest (in
        Moore steps) to the zone; 0 on sites of that zone (or where the zone does not
        exist). A cell picks among them at random (:func:`immunesim.kernels.move.homeward`).
    """
    L = zone.shape[0]
    out = np.zeros((len(ZONE_NAMES), L * L), np.uint8)
    for z in range(len(ZONE_NAMES)):
        dist = _chebyshev_distance(zone == z)
        if not np.isfinite(dist).any():
            continue
        padded = np.pad(dist, 1, constant_values=np.inf)
        nbs = [padded[1 + DY[d] : 1 + DY[d] + L, 1 + DX[d] : 1 + DX[d] + L] for d in range(8)]
        best = np.minimum.reduce(nbs)
        mask = np.zeros((L, L), np.uint8)
        for d in range(8):
            mask |= ((nbs[d] == best) & np.isfinite(best)).astype(np.uint8) << np.uint8(d)
        mask[zone == z] = 0
        out[z] = mask.reshape(-1)
    return out


def _chebyshev_distance(mask: np.ndarray) -> np.ndarray:
    """Chebyshev (Moore) distance to the nearest ``True`` site (linear-time transform)."""
    from scipy.ndimage import distance_transform_cdt

    if not mask.any():
        return np.full(mask.shape, np.inf)
    return distance_transform_cdt(~mask, metric="chessboard").astype(np.float64)


__all__ = ["DX", "DY", "Geometry", "build_zones", "homing_directions"]
