"""From a heap of DICOM frames to one cine: which series, which slice, which time.

A study folder as hospitals export it holds more than the cine: LGE and localizer images,
long-axis cines, repeated slices, copies of files, anonymised files sharing one UID.  The
choices here are the ones a clinician makes, and every one is said in the warnings:

- the cine is the series (or the set of series sharing one orientation and frame count, e.g.
  one series per slice) with several frames per slice position; single-frame series (LGE,
  localizers) are ignored and named; two candidate cines are refused and listed with their
  SeriesNumber and description (the user picks one with `--series`);
- one image per (slice position, time): byte-identical copies (same position, time and pixels)
  are read once; different images at one position and trigger time are refused and named
  (three slices exported with one ImagePositionPatient are never joined into one long cine);
  a SOPInstanceUID shared by different images is named in a warning and every image is kept.

Frame records are dicts made by dicom.py: file, series, series_number, series_description,
sop, ipp, iop, spacing, thickness, TriggerTime, AcquisitionTime, InstanceNumber, instance, pixels.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from cardiacquan import CardiacQuanError

POSITION_TOL_MM = 0.01
ORIENTATION_TOL = 1e-3


def parse_series(text):
    """'7' or '5,6,9-12' -> the set of SeriesNumbers (the --series option)."""
    out = set()
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise CardiacQuanError(f"--series {text}: give a SeriesNumber such as 7, or several such as 5,6,9-12")
    return out


def _number(r):
    return int(r["series_number"]) if r["series_number"] is not None else None


def _series_table(recs):
    """{series key: record list} in SeriesNumber order; the key is the SeriesInstanceUID."""
    by = {}
    for r in recs:
        by.setdefault(r["series"] or f"#{r['series_number']}", []).append(r)
    return dict(sorted(by.items(), key=lambda kv: (_number(kv[1][0]) or 0, kv[0])))


def _describe(series_recs):
    """(orientation, frames per position, positions, label) of one series."""
    r0 = series_recs[0]
    iops = Counter(tuple(np.round(np.asarray(r["iop"], float), 3)) for r in series_recs)
    iop = np.asarray(iops.most_common(1)[0][0])
    normal = np.cross(iop[:3], iop[3:])
    per_pos = Counter(round(float(np.asarray(r["ipp"], float) @ normal) / POSITION_TOL_MM) for r in series_recs)
    frames = Counter(per_pos.values()).most_common(1)[0][0]
    label = f"series {_number(r0) if _number(r0) is not None else '?'}"
    if r0.get("series_description"):
        label += f" '{r0['series_description']}'"
    return iop, frames, len(per_pos), label


def choose_series(recs, notes, wanted=None, hints=None):
    """The records of the cine (see the module docstring); `wanted`: a set of SeriesNumbers."""
    table = _series_table(recs)
    if wanted:
        chosen = {k: v for k, v in table.items() if _number(v[0]) in wanted}
        if not chosen:
            listing = "; ".join(f"{_describe(v)[3]} ({len(v)} images)" for v in table.values())
            raise CardiacQuanError(f"no series numbered {','.join(map(str, sorted(wanted)))} here; the folder holds: "
                                   f"{listing}")
        table = chosen
    info = {k: _describe(v) for k, v in table.items()}
    singles = [k for k, (_, frames, _, _) in info.items() if frames < 2]
    cines = [k for k in table if k not in singles]
    if not cines:
        if hints is not None and len(table) >= 1:
            hints["single_frame_hint"] = (
                "every series here has one image per slice position (" +
                "; ".join(f"{info[k][3]}: {len(table[k])} image(s)" for k in table) +
                "): these are not cines (LGE, localizers?); give the folder holding the cine series")
        return recs if not wanted else [r for v in table.values() for r in v]
    sets = []
    for k in cines:
        iop, frames = info[k][:2]
        for s in sets:
            if s["frames"] == frames and np.abs(s["iop"] - iop).max() < ORIENTATION_TOL * 10:
                s["keys"].append(k)
                break
        else:
            sets.append({"iop": iop, "frames": frames, "keys": [k]})
    if len(sets) > 1:
        listing = []
        for s in sets:
            numbers = [_number(table[k][0]) for k in s["keys"]]
            npos = sum(info[k][2] for k in s["keys"])
            names = ", ".join(info[k][3] for k in s["keys"][:3]) + (" ..." if len(s["keys"]) > 3 else "")
            listing.append(f"{names} ({npos} slice position(s) x {s['frames']} frames; "
                           f"--series {','.join(str(n) for n in numbers if n is not None)})")
        raise CardiacQuanError(f"the folder holds {len(sets)} candidate cines: {'; '.join(listing)}; choose one "
                               "with --series")
    for k in singles:
        notes.append(f"ignored {info[k][3]} ({len(table[k])} image(s), one per slice position: not a cine, "
                     "e.g. LGE or a localizer)")
    keep = set(sets[0]["keys"])
    return [r for k in table if k in keep for r in table[k]]


def geometry_group(recs, notes):
    """Keep the dominant orientation/matrix/spacing group (localizers mixed in are dropped)."""
    groups = []
    for r in recs:
        r["iop"] = np.asarray([float(v) for v in r["iop"]])
        r["ipp"] = np.asarray([float(v) for v in r["ipp"]])
        r["spacing"] = tuple(float(v) for v in r["spacing"])
        for g in groups:
            g0 = g[0]
            if (g0["pixels"].shape == r["pixels"].shape and np.abs(g0["iop"] - r["iop"]).max() < ORIENTATION_TOL
                    and np.allclose(g0["spacing"], r["spacing"], rtol=1e-3)):
                g.append(r)
                break
        else:
            groups.append([r])
    groups.sort(key=len, reverse=True)
    if len(groups) > 1:
        if len(groups[0]) <= 2 * len(groups[1]):
            raise CardiacQuanError(
                f"the images have mixed orientations/sizes ({len(groups[0])} images in one, {len(groups[1])} in another): "
                "give a folder holding one short-axis cine series (or choose one with --series)")
        notes.append(f"ignored {sum(map(len, groups[1:]))} image(s) with another orientation, size or pixel spacing")
    return groups[0]


def split_slices(recs, notes):
    """Group by position along the normal; one series per position (the last acquired)."""
    iop = recs[0]["iop"]
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    for r in recs:
        r["pos"] = float(r["ipp"] @ normal)
    recs = sorted(recs, key=lambda r: r["pos"])
    slices = [[recs[0]]]
    for r in recs[1:]:
        (slices[-1].append(r) if r["pos"] - slices[-1][-1]["pos"] <= POSITION_TOL_MM else slices.append([r]))
    for i, s in enumerate(slices):
        series = {r["series"] for r in s}
        if len(series) > 1:
            keep = max(s, key=lambda r: (r["series_number"] or 0.0, r["series"]))["series"]
            slices[i] = [r for r in s if r["series"] == keep]
            notes.append(f"slice at {s[0]['pos']:.2f} mm holds {len(series)} series (repeated acquisition?): "
                         f"kept the last one ({len(slices[i])} frames)")
    return slices, normal


def _when(r):
    return r["TriggerTime"] if r["TriggerTime"] is not None else r["AcquisitionTime"]


def drop_copies(slices, notes):
    """Read byte-identical copies once: the same position (one slice), time and pixels."""
    out = []
    for s in slices:
        kept, by_time = [], {}
        for r in s:
            twin = next((k for k in by_time.get(_when(r), []) if np.array_equal(k["pixels"], r["pixels"])), None)
            if twin is not None:
                notes.append(f"{r['file']} is a copy of {twin['file']} (same position, time and pixels): read once")
                continue
            by_time.setdefault(_when(r), []).append(r)
            kept.append(r)
        out.append(kept)
    return out


def _conflicts(slices, key):
    """Groups of different images sharing one slice and one value of `key`, in slices where
    `key` takes several values (a tag that is constant within a slice is simply not a time)."""
    found = []
    for s in slices:
        values = Counter(r[key] for r in s)
        if len(values) > 1:
            found += [(s, v, [r for r in s if r[key] == v]) for v, n in values.items() if n > 1]
    return found


def order_frames(slices, notes):
    """Sort each slice in time; refuse different images at one position and trigger time."""
    for key in ("TriggerTime", "AcquisitionTime", "InstanceNumber"):
        vals = [[r[key] for r in s] for s in slices]
        if not all(v is not None for vs in vals for v in vs):
            continue
        if all(len(set(vs)) == len(vs) for vs in vals):
            for s in slices:
                s.sort(key=lambda r: r[key])
            return key
        if key == "TriggerTime":
            clash = _conflicts(slices, key)
            if clash:
                s, v, group = clash[0]
                names = ", ".join(r["file"] for r in group[:4]) + (f" and {len(group) - 4} more" if len(group) > 4 else "")
                raise CardiacQuanError(
                    f"{len(group)} different images share one slice position ({s[0]['pos']:.2f} mm) and trigger time "
                    f"({v:g} ms): {names}" + (f" ({len(clash)} such clashes)" if len(clash) > 1 else "") +
                    ": several slices or acquisitions carry the same ImagePositionPatient; remove the extra images, "
                    "or choose one series with --series")
            notes.append("trigger times repeat within a slice; frames ordered by another tag")
    raise CardiacQuanError("cannot order the frames in time: TriggerTime, AcquisitionTime and InstanceNumber "
                           "are missing or repeated within a slice")


def equalise_frames(slices, key, notes):
    counts = [len(s) for s in slices]
    if len(set(counts)) == 1:
        return slices
    n_min = min(counts)
    if n_min >= 2 and key == "TriggerTime":
        trig = np.array([[r["TriggerTime"] for r in s[:n_min]] for s in slices])
        step = np.median(np.diff(trig, axis=1))
        if np.all(np.abs(trig - trig.mean(axis=0)) <= 0.5 * step):
            notes.append(f"slices have {min(counts)}-{max(counts)} frames: kept the first {n_min} of each")
            return [s[:n_min] for s in slices]
    n_mode = max(Counter(counts).items(), key=lambda kv: (kv[1], kv[0]))[0]
    dropped = [f"{s[0]['pos']:.1f} mm ({len(s)} frames)" for s in slices if len(s) != n_mode]
    notes.append(f"left out slice(s) whose frame count differs from {n_mode}: {', '.join(dropped)}")
    return [s for s in slices if len(s) == n_mode]


def shared_uid_notes(slices, notes):
    """Name SOPInstanceUIDs that several different (kept) images carry."""
    by_uid = {}
    for s in slices:
        for r in s:
            if r.get("sop") and r.get("frame") is None:
                by_uid.setdefault(r["sop"], []).append(r["file"])
    shared = {u: f for u, f in by_uid.items() if len(f) > 1}
    if shared:
        uid, files = next(iter(shared.items()))
        n = sum(len(f) for f in shared.values())
        notes.append(f"{n} different images share {len(shared)} SOPInstanceUID(s) (e.g. {uid}: {', '.join(files[:3])}"
                     f"{' ...' if len(files) > 3 else ''}): all were kept, told apart by position, time and pixels "
                     "(the UIDs are not unique: an anonymiser?)")
