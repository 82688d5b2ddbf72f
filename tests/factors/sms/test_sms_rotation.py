"""``piigate keys rotate`` re-wraps SMS factors' numbers like every factor secret, and a running
node that learns the new keys keeps sending codes (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sms_support import run_cli

from piigate.clock import FixedClock
from piigate.crypto.keyring import Keyring, open_keyring
from piigate.crypto.masterkey import MasterKeySpec
from piigate.crypto.secret import Secret
from piigate.factors.checks import code_checks
from piigate.factors.ports import factor_aad
from piigate.factors.sms import MemorySender
from piigate.factors.sms.ceremony import SmsCeremony
from piigate.factors.sms.codes import SmsCheck
from piigate.factors.sms.numbers import NumberDigests
from piigate.policy import compile_policy, load_policy_text
from piigate.policy.holder import PolicyHolder
from piigate.stepup.verification import Verifier
from piigate.store import Database, Store
from piigate.store.ports import SqlChallenges
from stepup_support import factor_enrollment

NUMBER = "+16502530042"
POLICY = """\
version: 1
levels:
  aal1: {acr: "urn:piigate:aal1"}
  aal2: {acr: "urn:piigate:aal2"}
pii:
  ssn: {}
factors:
  sms: {level: aal2, restricted: true}
rules:
  - name: read-ssn
    when: {pii: [ssn], action: [read]}
    require: {level: aal2}
"""


def ceremony(store: Store, keyring: Keyring, sender: MemorySender) -> SmsCeremony:
    clock = FixedClock()
    holder = PolicyHolder(compile_policy(load_policy_text(POLICY)))

    class NoAudit:
        async def record(self, type: str, **_: object) -> object:
            return None

    audit = NoAudit()
    verifier = Verifier(
        store=store,
        challenges=SqlChallenges(store, keyring),
        keyring=keyring,
        checks=code_checks(store, keyring, audit),
        policy=holder,
        audit=audit,
        clock=clock,
        issuer="https://piigate.test",
    )
    verifier.register("sms", SmsCheck(store, keyring))
    enrollment = factor_enrollment(
        store=store, keyring=keyring, policy=holder, audit=audit, clock=clock, issuer="i"
    )
    return SmsCeremony(
        store=store,
        counters=store,
        digests=NumberDigests(store, keyring, clock),
        sender=sender,
        keyring=keyring,
        policy=holder,
        audit=audit,
        clock=clock,
        verifier=verifier,
        enrollment=enrollment,
    )


async def test_rotation_rewraps_sms_numbers(
    db: Database, migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db)
    # The keys as a node whose data dir is tmp_path opens them (the CLI below uses the same).
    master = MasterKeySpec(default_file=tmp_path / "master.key")
    keyring = (await open_keyring(store, master, legacy_dir=None, clock=FixedClock())).keyring
    sender = MemorySender()
    sms = ceremony(store, keyring, sender)
    sent = await sms.enroll("alice", NUMBER)
    code = re.search(r"\d{6}", sender.sent[-1].text.reveal())
    assert code is not None
    await sms.confirm("alice", sent.factor.id, Secret(code.group()))
    before = await store.get_factor(sent.factor.id)
    assert before is not None and before.secret is not None

    monkeypatch.setenv("PIIGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PIIGATE_DATABASE_URL", migrated_url)
    status, out, err = await asyncio.to_thread(run_cli, "keys", "rotate", "--no-signing")
    assert status == 0, err
    assert "1 secrets re-wrapped" in out

    after = await store.get_factor(sent.factor.id)
    assert after is not None and after.secret is not None
    assert after.secret != before.secret
    # The running node learns the new data key from the re-wrapped number itself.
    assert await keyring.adecrypt(after.secret, aad=factor_aad(after.id)) == NUMBER.encode()
    assert f".{keyring.data_kid}." in after.secret
    # The number key (encrypted under the old data key) still opens: old keys are kept.
    fresh_sender = MemorySender()
    await ceremony(store, keyring, fresh_sender).enroll("bob", NUMBER)
    assert fresh_sender.sent[-1].to.e164 == NUMBER
