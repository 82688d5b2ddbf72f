"""``risk eval``'s report: the metrics of a replay as JSON-ready data, and as a readable table.

The first keys are the documented ones: ``logins``, ``attacks``, ``auc``,
``stepup_rate_legit`` and ``detection_rate`` at the threshold, and ``by_threshold``. Then:
``threshold``; ``operating_points`` (the ROC curve read at 95 % and 99 % detection);
``by_attack_type``; ``established_users`` (attempts of subjects with at least
:data:`ESTABLISHED` earlier successful logins, and attacks on such subjects), also per attack
type; ``baselines`` scored on the same replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from piigate.risk.evaluation.metrics import Point, auc, operating_point, rate_at
from piigate.risk.evaluation.replay import Replayed

__all__ = ["ESTABLISHED", "THRESHOLDS", "render", "report"]

THRESHOLDS: Final = tuple(range(0, 101, 5))
ESTABLISHED: Final = 12
_DETECTIONS: Final = (0.95, 0.99)


def _point(point: Point | None) -> dict[str, float] | None:
    if point is None:
        return None
    return {
        "score": point.threshold,
        "stepup_rate_legit": point.stepup_rate_legit,
        "detection_rate": point.detection_rate,
    }


def _points(attacks: Sequence[float], legit: Sequence[float]) -> dict[str, Any]:
    return {
        f"detection_{round(d * 100)}": _point(operating_point(attacks, legit, d))
        for d in _DETECTIONS
    }


class _Column:
    """One scorer's scores, split by ground truth and attack type, and for established subjects
    only (those with at least :data:`ESTABLISHED` earlier successful logins: the victim's, for
    an attack). One pass over the replay."""

    def __init__(self, replayed: Replayed, index: int) -> None:
        self.attacks: list[float] = []
        self.legit: list[float] = []
        self.established_attacks: list[float] = []
        self.established_legit: list[float] = []
        self.kinds: dict[str, tuple[list[float], list[float]]] = {}
        for scored in replayed.results:
            score = scored.scores[index]
            settled = scored.earlier >= ESTABLISHED
            if scored.attack:
                kind = self.kinds.setdefault(scored.attack_type or "attack", ([], []))
                self.attacks.append(score)
                kind[0].append(score)
                if settled:
                    self.established_attacks.append(score)
                    kind[1].append(score)
            else:
                self.legit.append(score)
                if settled:
                    self.established_legit.append(score)
        self.legit.sort()
        self.established_legit.sort()


def _by_type(column: _Column, threshold: float) -> dict[str, Any]:
    legit, settled = column.legit, column.established_legit
    return {
        kind: {
            "attacks": len(attacks),
            "auc": auc(attacks, legit),
            "detection_rate": rate_at(attacks, threshold),
            "operating_points": _points(attacks, legit),
            "established_users": {
                "attacks": len(on_settled),
                "auc": auc(on_settled, settled),
                "operating_points": _points(on_settled, settled),
            },
        }
        for kind, (attacks, on_settled) in sorted(column.kinds.items())
    }


def report(replayed: Replayed, *, threshold: float) -> dict[str, Any]:
    """The metrics of the engine (the first scorer) and of every baseline after it."""
    column = _Column(replayed, 0)
    attacks, legit = column.attacks, column.legit
    out: dict[str, Any] = {
        "logins": len(replayed.results),
        "attacks": len(attacks),
        "auc": auc(attacks, legit),
        "stepup_rate_legit": rate_at(legit, threshold),
        "detection_rate": rate_at(attacks, threshold),
        "by_threshold": [
            {
                "score": score,
                "stepup_rate_legit": rate_at(legit, score),
                "detection_rate": rate_at(attacks, score),
            }
            for score in THRESHOLDS
        ],
        "threshold": threshold,
        "operating_points": _points(attacks, legit),
        "by_attack_type": _by_type(column, threshold),
        "established_users": {
            "earlier_logins_at_least": ESTABLISHED,
            "legit_logins": len(column.established_legit),
            "attacks": len(column.established_attacks),
            "stepup_rate_legit": rate_at(column.established_legit, threshold),
            "detection_rate": rate_at(column.established_attacks, threshold),
            "auc": auc(column.established_attacks, column.established_legit),
            "operating_points": _points(column.established_attacks, column.established_legit),
        },
        "baselines": {},
    }
    for index, name in enumerate(replayed.names[1:], 1):
        base = _Column(replayed, index)
        out["baselines"][name] = {
            "auc": auc(base.attacks, base.legit),
            # Binary baselines step up at 1; the likelihood-ratio model has no threshold.
            "stepup_rate_legit": rate_at(base.legit, 1.0) if name != "freeman" else None,
            "detection_rate": rate_at(base.attacks, 1.0) if name != "freeman" else None,
            "operating_points": _points(base.attacks, base.legit),
            "by_attack_type": _by_type(base, 1.0),
        }
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:5.1f} %"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _at(points: dict[str, Any], key: str) -> str:
    point = points.get(key)
    if point is None:
        return "-"
    return f"{_pct(point['stepup_rate_legit'])} (score {point['score']:.4g})"


def render(data: dict[str, Any]) -> list[str]:
    """The report as lines of text: the summary, per attack type, the baselines."""
    t = data["threshold"]
    lines = [
        f"logins {data['logins']}, attacks {data['attacks']}, AUC {_num(data['auc'])}",
        f"at score >= {t:g}: legitimate step-ups {_pct(data['stepup_rate_legit'])}, "
        f"attacks detected {_pct(data['detection_rate'])}",
        f"established users (>= {ESTABLISHED} earlier logins): "
        f"{data['established_users']['legit_logins']} attempts, step-ups "
        f"{_pct(data['established_users']['stepup_rate_legit'])}; "
        f"{data['established_users']['attacks']} attacks on them, detected "
        f"{_pct(data['established_users']['detection_rate'])}",
        f"legitimate step-ups at 95 % detection: {_at(data['operating_points'], 'detection_95')}",
        "",
        f"{'score':>5}  {'legit step-ups':>14}  {'detected':>9}",
    ]
    lines += [
        f"{row['score']:>5}  {_pct(row['stepup_rate_legit']):>14}  {_pct(row['detection_rate']):>9}"
        for row in data["by_threshold"]
    ]
    lines += [
        "",
        f"{'attack type':<12} {'n':>6} {'AUC':>7} {'detected':>9}  {'legit at 95 % det.':<24}"
        "established users' legit at 99 % det.",
    ]
    for kind, row in data["by_attack_type"].items():
        settled = row["established_users"]["operating_points"]
        lines.append(
            f"{kind:<12} {row['attacks']:>6} {_num(row['auc']):>7} "
            f"{_pct(row['detection_rate']):>9}  "
            f"{_at(row['operating_points'], 'detection_95'):<24}{_at(settled, 'detection_99')}"
        )
    lines += ["", f"{'baseline':<24} {'AUC':>7} {'step-ups':>9} {'detected':>9}  at 95 % det."]
    for name, row in data["baselines"].items():
        lines.append(
            f"{name:<24} {_num(row['auc']):>7} {_pct(row['stepup_rate_legit']):>9} "
            f"{_pct(row['detection_rate']):>9}  {_at(row['operating_points'], 'detection_95')}"
        )
    return lines
