"""Attacks on one contract (see base.py). ``ATTACKS`` maps a name to its class; ``make_attack`` builds one."""

from __future__ import annotations

from typing import Any

from core.attacks.apgd import APGD, APGDConfig, dlr_loss
from core.attacks.base import Attack, AttackConfig, AttackResult, validate_eps
from core.attacks.cw import CarliniWagnerL2, CWConfig
from core.attacks.deepfool import DeepFool, DeepFoolConfig
from core.attacks.ensemble import FullConfig, FullEnsemble, QuickConfig, QuickEnsemble
from core.attacks.fgsm import FGSM, NFGSM, FGSMConfig, NFGSMConfig
from core.attacks.fmn import FMN, FMNConfig
from core.attacks.langevin import Langevin, LangevinConfig
from core.attacks.norms import NORMS, lp_norms, project, threat_norm
from core.attacks.pgd import PGD, PGDConfig
from core.attacks.square import Square, SquareConfig
from core.attacks.tpgd import TemperaturePGD, TPGDConfig
from core.attacks.trades import TRADESAttack, TRADESConfig
from core.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, NFGSM, PGD, TemperaturePGD, APGD, TRADESAttack, DeepFool, CarliniWagnerL2, FMN,
                              Square, QuickEnsemble, FullEnsemble, Langevin)
}


def make_attack(name: str, **kwargs: Any) -> Attack:
    """Build an attack by registry name with validated keyword arguments."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}")
    cls = ATTACKS[name]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for attack {name!r}: {exc}") from exc


__all__ = [
    "APGD", "APGDConfig", "ATTACKS", "Attack", "AttackConfig", "AttackResult", "CWConfig", "CarliniWagnerL2",
    "DeepFool", "DeepFoolConfig", "FGSM", "FGSMConfig", "FMN", "FMNConfig", "FullConfig", "FullEnsemble", "NFGSM",
    "NFGSMConfig", "NORMS", "PGD", "PGDConfig", "QuickConfig", "QuickEnsemble", "Square", "SquareConfig",
    "TPGDConfig", "TRADESAttack", "Langevin", "LangevinConfig", "TRADESConfig", "TemperaturePGD", "dlr_loss",
    "lp_norms", "make_attack", "project", "threat_norm", "validate_eps",
]
