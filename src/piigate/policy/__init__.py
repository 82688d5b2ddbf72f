"""Policy as code: load (with positioned errors), compile (indexed), evaluate (pure)."""

from piigate.policy.compiled import CompiledPolicy, compile_policy
from piigate.policy.evaluate import Evaluation, RuleStatus, RuleTrace, evaluate
from piigate.policy.loader import load_policy, load_policy_text
from piigate.policy.model import Policy, Profile

__all__ = [
    "CompiledPolicy",
    "Evaluation",
    "Policy",
    "Profile",
    "RuleStatus",
    "RuleTrace",
    "compile_policy",
    "evaluate",
    "load_policy",
    "load_policy_text",
]
