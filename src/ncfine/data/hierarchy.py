"""Two-level label hierarchy: every fine class belongs to exactly one coarse class.

Yang, Steinhardt & Hu (ICML 2023, "Are Neurons Actually Collapsed?") train on the coarse labels
c = g(f) of a surjective map g: {0..N-1} -> {0..K-1} and ask how much of the fine label f the
learned features still carry. `LabelHierarchy` is that map g, validated once, with the lookup
`coarse_of(fine) = table[fine]` done on whatever device the labels live on.

Ways to build one (all validated, all raise a one-line DataError naming the offending classes):

    LabelHierarchy([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])         # coarse id per fine class
    LabelHierarchy.modulo(10, 5)                           # g(f) = f mod K (the paper's CIFAR-10 setup)
    LabelHierarchy.identity(10)                            # g(f) = f (plain fine training)
    LabelHierarchy.from_mapping({"vehicle": ["automobile", "truck"], ...}, fine_names)
    LabelHierarchy.from_labels(fine, coarse)               # from per-sample labels (CIFAR-100 superclasses)
    build_hierarchy("mod:5" | "identity" | "superclass" | [..] | {..}, num_fine, fine_names, ...)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ncfine.utils.errors import ConfigError, DataError


def _fmt_set(values) -> str:
    return "{" + ",".join(str(v) for v in sorted(values)) + "}"


def _fmt_classes(ids: Sequence[int], names: Sequence[str] | None) -> str:
    if names is None:
        return ", ".join(str(i) for i in ids)
    return ", ".join(str(i) if names[i] == str(i) else f"{i} ({names[i]})" for i in ids)


class LabelHierarchy:
    """The map fine class -> coarse class, with names for both levels.

    Args:
        fine_to_coarse: `fine_to_coarse[f]` is the coarse id of fine class f; the coarse ids must be
            exactly 0..K-1 (every coarse class non-empty).
        fine_names: N names (default "0".."N-1").
        coarse_names: K names (default: the fine names of each coarse class joined by "+").
    """

    def __init__(
        self,
        fine_to_coarse: Sequence[int],
        fine_names: Sequence[str] | None = None,
        coarse_names: Sequence[str] | None = None,
    ):
        table = _as_int_list(fine_to_coarse, "fine_to_coarse")
        if not table:
            raise DataError("a label hierarchy needs at least one fine class, got an empty fine_to_coarse list")
        negative = sorted({c for c in table if c < 0})
        if negative:
            raise DataError(f"coarse ids must be >= 0, got {negative} in fine_to_coarse={table}")
        used = set(table)
        num_coarse = max(used) + 1
        missing = [c for c in range(num_coarse) if c not in used]
        if missing:
            raise DataError(
                f"coarse ids must be contiguous 0..K-1: missing {', '.join(map(str, missing))} (got {_fmt_set(used)})"
            )
        num_fine = len(table)
        if fine_names is None:
            fine_names = [str(f) for f in range(num_fine)]
        fine_names = [str(n) for n in fine_names]
        if len(fine_names) != num_fine:
            raise DataError(f"got {len(fine_names)} fine class names for {num_fine} fine classes: {fine_names}")
        dup = sorted({n for n in fine_names if fine_names.count(n) > 1})
        if dup:
            raise DataError(f"fine class names must be unique; repeated: {dup}")
        if coarse_names is None:
            coarse_names = [
                "+".join(fine_names[f] for f in range(num_fine) if table[f] == c) for c in range(num_coarse)
            ]
        coarse_names = [str(n) for n in coarse_names]
        if len(coarse_names) != num_coarse:
            raise DataError(
                f"got {len(coarse_names)} coarse class names for {num_coarse} coarse classes: {coarse_names}"
            )

        self._fine_to_coarse = tuple(table)
        self.fine_names: list[str] = fine_names
        self.coarse_names: list[str] = coarse_names
        self._table = torch.tensor(table, dtype=torch.long)
        self._tables: dict[torch.device, torch.Tensor] = {self._table.device: self._table}

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def modulo(cls, num_fine: int, num_coarse: int, fine_names: Sequence[str] | None = None) -> LabelHierarchy:
        """g(f) = f mod K. CIFAR-10 with K=5: {airplane,dog} {automobile,frog} {bird,horse} {cat,ship} {deer,truck}."""
        num_fine, num_coarse = _positive(num_fine, "num_fine"), _positive(num_coarse, "num_coarse")
        if num_coarse > num_fine:
            raise DataError(f"mod:{num_coarse} needs at most num_fine={num_fine} coarse classes (1..{num_fine})")
        return cls([f % num_coarse for f in range(num_fine)], fine_names)

    @classmethod
    def identity(cls, num_fine: int, names: Sequence[str] | None = None) -> LabelHierarchy:
        """g(f) = f: coarse labels are the fine labels (the 'normal training' baseline)."""
        num_fine = _positive(num_fine, "num_fine")
        return cls(list(range(num_fine)), names, names)

    @classmethod
    def from_mapping(cls, mapping, fine_names: Sequence[str] | None = None) -> LabelHierarchy:
        """From a list (coarse id per fine class), a dict {coarse name: [fine names or ids]}, or (with
        fine_names) a dict {fine name: coarse name or id}.

        In the dict forms every fine class must appear exactly once; a fine class that is missing,
        repeated or unknown is named in the error.
        """
        if isinstance(mapping, Mapping):
            return cls._from_dict(dict(mapping), fine_names)
        if isinstance(mapping, Sequence) and not isinstance(mapping, (str, bytes)):
            table = _as_int_list(mapping, "hierarchy list")
            if fine_names is not None and len(table) != len(fine_names):
                raise DataError(
                    f"hierarchy list has {len(table)} entries but the data has {len(fine_names)} fine classes "
                    f"({', '.join(fine_names)}); give one coarse id per fine class"
                )
            return cls(table, fine_names)
        raise DataError(
            f"a hierarchy mapping must be a list of coarse ids or a dict {{coarse: [fine classes]}}, got {mapping!r}"
        )

    @classmethod
    def _from_dict(cls, mapping: dict, fine_names: Sequence[str] | None) -> LabelHierarchy:
        names = None if fine_names is None else [str(n) for n in fine_names]
        lookup = {} if names is None else {n: i for i, n in enumerate(names)}
        if _is_fine_to_coarse(mapping, lookup):
            # {fine class: coarse class}, e.g. {husky: dog, beagle: dog, siamese: cat, tabby: cat}
            given = {str(k): v for k, v in mapping.items()}
            missing = [lookup[n] for n in names if n not in given]
            if missing:
                raise DataError(
                    f"fine classes not mapped to any coarse class: {_fmt_classes(missing, names)}; "
                    "the {fine class: coarse class} mapping needs every fine class"
                )
            inverted: dict = {}
            for fine, coarse in mapping.items():
                inverted.setdefault(coarse, []).append(fine)
            if all(isinstance(c, int) and not isinstance(c, bool) for c in inverted):
                return cls([given[n] for n in names], names)  # coarse ids: checked to be contiguous
            mapping = {str(c): members for c, members in inverted.items()}
        assigned: dict[int, str] = {}
        for coarse_name, members in mapping.items():
            if isinstance(members, (str, int)) or not isinstance(members, Sequence):
                members = [members]
            for member in members:
                fine = _resolve_fine(member, lookup, names, coarse_name)
                if fine in assigned:
                    label = names[fine] if names else fine
                    raise DataError(
                        f"fine class {label!r} is mapped to more than one coarse class: "
                        f"{assigned[fine]!r} and {str(coarse_name)!r}"
                    )
                assigned[fine] = str(coarse_name)
        num_fine = len(names) if names is not None else (max(assigned) + 1 if assigned else 0)
        missing = [f for f in range(num_fine) if f not in assigned]
        if missing:
            raise DataError(
                f"fine classes not mapped to any coarse class: {_fmt_classes(missing, names)}; "
                "every fine class must appear in exactly one coarse list"
            )
        coarse_names = [str(c) for c in mapping if any(v == str(c) for v in assigned.values())]
        empty = [str(c) for c in mapping if str(c) not in coarse_names]
        if empty:
            raise DataError(f"coarse classes with no fine classes: {empty}")
        coarse_id = {c: i for i, c in enumerate(coarse_names)}
        return cls([coarse_id[assigned[f]] for f in range(num_fine)], names, coarse_names)

    @classmethod
    def from_labels(
        cls,
        fine: torch.Tensor,
        coarse: torch.Tensor,
        num_fine: int | None = None,
        fine_names: Sequence[str] | None = None,
        coarse_names: Sequence[str] | None = None,
    ) -> LabelHierarchy:
        """From per-sample (fine, coarse) label pairs, e.g. CIFAR-100's fine_labels / coarse_labels.

        Each fine class must occur and always with the same coarse label.
        """
        fine, coarse = torch.as_tensor(fine).long().cpu(), torch.as_tensor(coarse).long().cpu()
        if fine.shape != coarse.shape:
            raise DataError(
                f"fine and coarse label arrays differ in shape: {tuple(fine.shape)} vs {tuple(coarse.shape)}"
            )
        if num_fine is None:
            num_fine = len(fine_names) if fine_names is not None else int(fine.max()) + 1
        if fine.numel() and (int(fine.min()) < 0 or int(fine.max()) >= num_fine):
            raise DataError(f"fine labels span {int(fine.min())}..{int(fine.max())}, outside 0..{num_fine - 1}")
        pairs = torch.unique(torch.stack([fine, coarse], 1), dim=0)
        table: list[int | None] = [None] * num_fine
        for f, c in pairs.tolist():
            if table[f] is not None:
                label = fine_names[f] if fine_names is not None else f
                raise DataError(
                    f"fine class {label!r} carries more than one coarse label ({table[f]} and {c}); "
                    "the dataset's coarse labels are not a hierarchy"
                )
            table[f] = c
        missing = [f for f, c in enumerate(table) if c is None]
        if missing:
            raise DataError(f"fine classes with no samples, so no coarse label: {_fmt_classes(missing, fine_names)}")
        return cls(table, fine_names, coarse_names)

    # ----------------------------------------------------------------------------- queries
    @property
    def num_fine(self) -> int:
        return len(self._fine_to_coarse)

    @property
    def num_coarse(self) -> int:
        return len(self.coarse_names)

    @property
    def fine_to_coarse(self) -> tuple[int, ...]:
        return self._fine_to_coarse

    @property
    def is_identity(self) -> bool:
        """True when coarse and fine labels carry the same information (a bijection)."""
        return self.num_coarse == self.num_fine

    def table(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The (N,) int64 lookup table fine -> coarse on `device` (cached per device)."""
        device = torch.device(device) if device is not None else self._table.device
        cached = self._tables.get(device)
        if cached is None:
            cached = self._tables[device] = self._table.to(device)
        return cached

    def coarse_of(self, fine: torch.Tensor) -> torch.Tensor:
        """Coarse labels of int fine labels, on the labels' device."""
        fine = torch.as_tensor(fine)
        if fine.dtype.is_floating_point or fine.dtype == torch.bool:
            raise DataError(f"fine labels must be integers, got dtype {fine.dtype}")
        if fine.numel() and fine.device.type == "cpu":  # a range check on CUDA would sync; setup checks once there
            lo, hi = int(fine.min()), int(fine.max())
            if lo < 0 or hi >= self.num_fine:
                bad = lo if lo < 0 else hi
                raise DataError(f"fine label {bad} is outside 0..{self.num_fine - 1} of this hierarchy")
        return self.table(fine.device)[fine.long()]

    def fine_classes_of(self, coarse: int) -> list[int]:
        """The fine class ids whose coarse class is `coarse`."""
        if not 0 <= int(coarse) < self.num_coarse:
            raise DataError(f"coarse class {coarse} is outside 0..{self.num_coarse - 1}")
        return [f for f, c in enumerate(self._fine_to_coarse) if c == int(coarse)]

    def groups(self) -> list[list[int]]:
        """The fine class ids of each coarse class, in coarse order."""
        return [self.fine_classes_of(c) for c in range(self.num_coarse)]

    def describe(self) -> str:
        """One line, e.g. 'airplane+dog: {airplane, dog} | ...'."""
        return " | ".join(
            f"{self.coarse_names[c]}: {{{', '.join(self.fine_names[f] for f in group)}}}"
            for c, group in enumerate(self.groups())
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LabelHierarchy)
            and self._fine_to_coarse == other._fine_to_coarse
            and self.fine_names == other.fine_names
            and self.coarse_names == other.coarse_names
        )

    def __hash__(self) -> int:
        return hash((self._fine_to_coarse, tuple(self.fine_names), tuple(self.coarse_names)))

    def __repr__(self) -> str:
        return f"LabelHierarchy(num_fine={self.num_fine}, num_coarse={self.num_coarse}, {self.describe()})"


def _is_fine_to_coarse(mapping: dict, lookup: dict[str, int]) -> bool:
    """True for the {fine class: coarse class} form: every key is a fine class name and every value a
    single coarse id, or a single coarse name that is not a fine class name (the {coarse: [fine classes]}
    form has coarse names as keys and fine classes as values)."""
    values = list(mapping.values())
    if not lookup or not mapping or not all(isinstance(k, str) and k in lookup for k in mapping):
        return False
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return True
    return all(isinstance(v, str) and v not in lookup for v in values)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_int_list(values, what: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not (isinstance(v, int) or (hasattr(v, "__index__") and not isinstance(v, float))):
            raise DataError(f"{what} must contain integer coarse ids, got {v!r} in {list(values)!r}")
        out.append(int(v))
    return out


def _resolve_fine(member, lookup: dict[str, int], names: list[str] | None, coarse_name) -> int:
    if isinstance(member, str) and member in lookup:
        return lookup[member]
    if isinstance(member, int) and not isinstance(member, bool):
        if member >= 0 and (names is None or member < len(names)):
            return member
    valid = f"valid fine classes: {', '.join(names)}" if names else "give fine class ids 0..N-1"
    raise DataError(f"unknown fine class {member!r} in coarse class {str(coarse_name)!r}; {valid}")


# --------------------------------------------------------------------------------- config specs
SpecBuilder = Callable[..., LabelHierarchy]
# name -> builder(arg, num_fine, fine_names, default_coarse_labels, coarse_names); arg is the text after ":".
HIERARCHY_SPECS: dict[str, SpecBuilder] = {}


def _spec(name: str):
    def register(fn: SpecBuilder) -> SpecBuilder:
        HIERARCHY_SPECS[name] = fn
        return fn

    return register


@_spec("mod")
def _mod(arg, num_fine, fine_names, default_coarse_labels, coarse_names, num_coarse=None):
    k = arg if arg is not None else num_coarse
    if k is None:
        raise ConfigError("hierarchy 'mod' needs the number of coarse classes, e.g. hierarchy=mod:5")
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise ConfigError(
            f"hierarchy 'mod:{arg}': the number of coarse classes must be an integer, e.g. mod:5"
        ) from None
    return LabelHierarchy.modulo(num_fine, k, fine_names)


@_spec("identity")
def _identity(arg, num_fine, fine_names, default_coarse_labels, coarse_names, num_coarse=None):
    return LabelHierarchy.identity(num_fine, fine_names)


HIERARCHY_SPECS["fine"] = _identity


@_spec("superclass")
def _superclass(arg, num_fine, fine_names, default_coarse_labels, coarse_names, num_coarse=None):
    if default_coarse_labels is None:
        raise ConfigError(
            "hierarchy 'superclass' needs coarse labels provided by the dataset, and this one has none; "
            "use mod:K, identity, a list of coarse ids or a dict {coarse: [fine classes]}"
        )
    return LabelHierarchy(list(default_coarse_labels), fine_names, coarse_names)


def build_hierarchy(
    spec,
    num_fine: int,
    fine_names: Sequence[str] | None = None,
    default_coarse_labels: Sequence[int] | None = None,
    coarse_names: Sequence[str] | None = None,
    num_coarse: int | None = None,
) -> LabelHierarchy:
    """A LabelHierarchy from a config value.

    spec: "mod:K" (or "mod" with `num_coarse`), "identity" (alias "fine"), "superclass" (the
    dataset's own coarse labels: `default_coarse_labels[f]` with `coarse_names`), a list of coarse
    ids per fine class, a dict {coarse name: [fine names or ids]}, or a LabelHierarchy.
    """
    if isinstance(spec, LabelHierarchy):
        hierarchy = spec
    elif isinstance(spec, str):
        name, _, arg = spec.strip().partition(":")
        builder = _spec_builder(spec)
        hierarchy = builder(arg.strip() or None, num_fine, fine_names, default_coarse_labels, coarse_names, num_coarse)
    elif isinstance(spec, (Mapping, Sequence)) and not isinstance(spec, bytes):
        hierarchy = LabelHierarchy.from_mapping(_plain(spec), fine_names)
    else:
        raise ConfigError(f"hierarchy must be a string (mod:K, identity, superclass), a list or a dict, got {spec!r}")
    if hierarchy.num_fine != num_fine:
        raise DataError(
            f"the hierarchy has {hierarchy.num_fine} fine classes but the data has {num_fine}"
            + (f" ({', '.join(fine_names)})" if fine_names else "")
        )
    return hierarchy


def _spec_builder(spec: str) -> SpecBuilder:
    builder = HIERARCHY_SPECS.get(spec.strip().partition(":")[0].strip().lower())
    if builder is None:
        raise ConfigError(
            f"unknown hierarchy {spec!r}; valid: {', '.join(sorted(HIERARCHY_SPECS))} "
            "(e.g. mod:5), a list of coarse ids per fine class, or a dict {coarse: [fine classes]}"
        )
    return builder


def check_hierarchy_spec(spec, num_fine: int | None) -> None:
    """The checks of `build_hierarchy` that need no data: the spec's form, and where the number of
    fine classes is known without loading (`num_fine`), that it fits (mod:K, a list of coarse ids).
    `superclass` and the dict forms need the data's own labels and names: they are checked at load."""
    if isinstance(spec, str):
        builder = _spec_builder(spec)
        if builder is _superclass or num_fine is None:
            return
    elif isinstance(spec, Mapping) or num_fine is None:
        return
    build_hierarchy(spec, num_fine)


def _plain(value):
    """OmegaConf containers (from Hydra) -> plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value
