"""What ``piigate demo`` prints: where everything is, who to sign in as, and a walkthrough.

The curl part is a shell script (also written to ``DATA_DIR/walkthrough.sh``) between two marker
lines, :data:`BEGIN` and :data:`END`. Each step starts with a ``# step N (key): ...`` comment;
each ``call`` (curl with a JSON body; it prints the status and the body, and keeps the body for
``pick``) ends with ``# → STATUS ...``, the answer to expect. The demo's test runs the steps in
order and checks them against those comments.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from piigate.demo.accounts import DemoAccounts

__all__ = ["BEGIN", "END", "DemoPlaces", "banner", "browser_steps", "curl_walkthrough"]

BEGIN: Final = "# --- walkthrough (curl): begin ---"
END: Final = "# --- walkthrough (curl): end ---"
# The customers the steps touch (any of the 300 would do).
_READ, _DELETED = 7, range(11, 19)
_TRANSFER = '{"amount": "25000.00", "currency": "EUR", "to_account": "DE89370400440532013000"}'
_OTHER_AMOUNT = '{"amount": "95000.00", "currency": "EUR", "to_account": "DE89370400440532013000"}'


@dataclass(frozen=True, slots=True)
class DemoPlaces:
    """Where the demo's parts are."""

    service: str  # the service and console (the public URL)
    api: str  # the customer API (unprotected) and its identity provider under /idp
    gateway: str  # the HTTP gateway in front of the API
    data_dir: Path
    piigate: str  # the piigate command, as the walkthrough runs it
    python: str  # a Python with piigate installed (for pick)
    postgres_port: int | None = None  # the PostgreSQL gateway, when it runs
    postgres_database: str | None = None


def banner(places: DemoPlaces, accounts: DemoAccounts, postgres_note: str) -> str:
    demo, admin = accounts.user("demo"), accounts.user("admin")
    code = f"{places.piigate} demo code --data-dir {shlex.quote(str(places.data_dir))}"
    lines = [
        f"piigate demo: data in {places.data_dir} (kept between runs; --reset starts over)",
        "",
        f"  service and console  {places.service}   (/login, /me, /security; API docs /docs)",
        f"  customer API         {places.api}   (unprotected; its identity provider: /idp)",
        f"  HTTP gateway         {places.gateway}   (the customer API behind piigate)",
        (
            f"  PostgreSQL gateway   127.0.0.1:{places.postgres_port}   ({postgres_note})"
            if places.postgres_port is not None
            else f"  {postgres_note}"
        ),
        "",
        "  users (the console; bearer tokens from the identity provider):",
        f"    demo  / {demo.password.reveal()}   role support, TOTP enrolled",
        f"    admin / {admin.password.reveal()}   roles admin, security (the security pages)",
        f"  their TOTP codes: {code} [--user admin]",
        f"  API key with scope events (the audit trail): {accounts.events_key.reveal()}",
    ]
    return "\n".join(lines)


def curl_walkthrough(places: DemoPlaces, accounts: DemoAccounts) -> str:
    """The curl steps, :data:`BEGIN` to :data:`END` (see the module's doc)."""
    q = shlex.quote
    password = accounts.user("demo").password.reveal()
    setup = f"""\
# setup: where things are, three helpers, and a token for the demo user from the identity provider
SVC={q(places.service)} API={q(places.api)} GW={q(places.gateway)}
DEMO={q(str(places.data_dir))} PIIGATE={q(places.piigate)} PY={q(places.python)}
AUDIT={q("Authorization: Bearer " + accounts.events_key.reveal())}
call() {{  # curl with a JSON body: prints the status and the body, keeps the body for pick
  STATUS=$(curl -s -o "$DEMO/last.json" -w '%{{http_code}}' \\
    -H 'content-type: application/json' "$@")
  echo "$STATUS $(cat "$DEMO/last.json")"
}}
pick() {{  # a value of the last body: pick challenge id
  "$PY" -c 'import functools, json, sys; body = json.load(open(sys.argv[1]))
print(functools.reduce(lambda d, k: d[k], sys.argv[2:], body))' "$DEMO/last.json" "$@"
}}
code() {{ "$PIIGATE" demo code --data-dir "$DEMO" "$@"; }}  # the demo user's TOTP code
curl -s "$API/idp/token" -o "$DEMO/last.json" \\
  -d grant_type=password -d username=demo -d password={q(password)}
TOKEN=$(pick access_token); AUTH="Authorization: Bearer $TOKEN"\
"""
    steps = [setup, *_steps(places)]
    return "\n".join([BEGIN, "\n\n".join(steps), END])


def _steps(places: DemoPlaces) -> list[str]:
    verify = (
        'call "$SVC/v1/challenges/$CHL/verify" -H "$AUTH" '
        '-d "{\\"method\\": \\"totp\\", \\"code\\": \\"$(code)\\"}"'
    )
    steps = [
        f"""\
# step 1 (masking): support reads a customer through the gateway: SSN, passport and IBAN come
# back masked (the API itself, at $API, has them in the clear)
call "$GW/customers/{_READ}" -H "$AUTH"   # → 200, ssn masked: ***-**-…""",
        f"""\
# step 2 (totp-step-up): changing an SSN needs aal2 within 5 minutes. The gateway answers 401
# with a challenge; the demo user's TOTP code answers it; the grant lets the change through.
# (`code` waits for the next 30-second step when this one's code was used already.)
SSN='{{"ssn": "900-55-0107"}}'
call -XPUT "$GW/customers/{_READ}" -H "$AUTH" -d "$SSN"   # → 401, a challenge
CHL=$(pick challenge id)
{verify}   # → 200, a grant
G="PIIGate-Grant: $(pick grant)"
call -XPUT "$GW/customers/{_READ}" -H "$AUTH" -H "$G" -d "$SSN"   # → 200""",
        f"""\
# step 3 (bound-transfer): a transfer over 10 000 is approved for that one request (max_age: 0):
# the grant covers this amount, currency and payee, once
T='{_TRANSFER}'
OTHER='{_OTHER_AMOUNT}'
call -XPOST "$GW/transfers" -H "$AUTH" -d "$T"   # → 401, a challenge bound to this transfer
CHL=$(pick challenge id)
{verify}   # → 200, a grant
G="PIIGate-Grant: $(pick grant)"
call -XPOST "$GW/transfers" -H "$AUTH" -H "$G" -d "$OTHER"   # → 401, another amount
call -XPOST "$GW/transfers" -H "$AUTH" -H "$G" -d "$T"   # → 201, the transfer
call -XPOST "$GW/transfers" -H "$AUTH" -H "$G" -d "$T"   # → 401, the grant is spent""",
        f"""\
# step 4 (bulk-delete): one delete is ordinary work; a burst of PII changes trips the risk
# engine's bulk_destructive signal (over 5 in 10 minutes), and each further delete needs a
# passkey (aal3, rule bulk-deletes): open the challenge's url in the browser to approve one
for id in {" ".join(str(i) for i in _DELETED)}; do
  call -XDELETE "$GW/customers/$id" -H "$AUTH"   # → 204 until the burst trips it
  [ "$STATUS" = 204 ] || break
done   # → 401, aal3 (webauthn)""",
        """\
# step 5 (audit): the audit trail saw it coming: an approaching_limit warning at 80 % of the
# limit (the console's /security page shows the same events live)
call "$SVC/v1/events?type=approaching_limit&subject=demo" -H "$AUDIT"  # → 200, bulk_destructive""",
    ]
    if places.postgres_port is not None:
        steps.append(
            f"""\
# step 6 (postgres): the same customers in PostgreSQL, through the PostgreSQL gateway, with the
# same token as the password: the SSN column comes back masked
PGPASSWORD="$TOKEN" psql -h 127.0.0.1 -p {places.postgres_port} -U demo \\
  -d {places.postgres_database} \\
  -c 'SELECT id, name, ssn, phone FROM customers ORDER BY id LIMIT 3'   # ssn: ***-**-…"""  # noqa: S608 - shell text
        )
    return steps


def browser_steps(places: DemoPlaces) -> str:
    """The steps to take in a browser (WebAuthn, the live feed)."""
    svc = places.service
    return f"""\
In the browser:
  - a WebAuthn step-up: sign in as demo at {svc}/login, add a passkey at
    {svc}/me (after a TOTP code: `piigate demo code`), then open a challenge's page,
    {svc}/stepup/<challenge id> (step 4's 401 names one, as its url), and approve
    with the passkey;
  - the live feed: sign in as admin (another browser profile, or a private window) at
    {svc}/security, run the walkthrough again and watch the decisions, the step-ups
    and the bulk-delete warning arrive.

Ctrl-C stops everything."""
