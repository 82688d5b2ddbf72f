"""What the gateway core's tests share: a policy with the classes of CONTRACT §7, the §7
configuration, and positions in YAML text."""

from __future__ import annotations

import textwrap

from piigate.policy import Policy, load_policy_text

POLICY = textwrap.dedent(
    """\
    version: 1
    levels:
      aal1: {acr: "urn:x:aal1"}
      aal2: {acr: "urn:x:aal2"}
      aal3: {acr: "urn:x:aal3"}
    pii:
      ssn: {sensitivity: high}
      passport: {sensitivity: high}
      bank_account: {sensitivity: high}
      phone: {sensitivity: medium}
      mailing_address: {sensitivity: medium}
      shoe_size: {sensitivity: low}
    factors:
      totp: {level: aal2}
      webauthn: {level: aal3}
    rules:
      - name: read-identity-numbers
        when: {pii: [ssn, passport, bank_account], action: [read]}
        require: {level: aal2, max_age: 5m}
        otherwise: mask
      - name: edit-identity-numbers
        when: {pii: [ssn, passport, bank_account], action: [update, create]}
        require: {level: aal2, max_age: 5m}
      - name: delete-pii-records
        when: {pii: any, action: [delete]}
        require: {level: aal3, max_age: 0}
      - name: high-value-transfer
        when: {action: [transact], amount_over: 10000}
        require: {level: aal3, max_age: 0}
    """
)

# CONTRACT §7's example (its longest flow mappings written as blocks).
GATEWAY = textwrap.dedent(
    """\
    gateway:
      http:
        listen: 127.0.0.1:8081
        upstream: http://127.0.0.1:9000
        identity:
          issuer: https://idp.example
          audience: customers-api
          jwks_url: https://idp.example/jwks
        rate_limit: {per_subject: 120/m, per_ip: 600/m}
        routes:
          - match: {method: GET, path: "/customers/{id}"}
            action: read
            resource: {type: customer, id: "{id}"}
            response_fields:
              "$.ssn": ssn
              "$.passport_number": passport
              "$.bank.account": bank_account
              "$.phone": phone
              "$.address": mailing_address
          - match: {method: [PUT, PATCH], path: "/customers/{id}"}
            action: update
            resource: {type: customer, id: "{id}"}
            request_fields: {"$.ssn": ssn, "$.address": mailing_address, "$.phone": phone}
          - match: {method: DELETE, path: "/customers/{id}"}
            action: delete
            pii: [ssn, passport, bank_account, phone, mailing_address]
          - match: {method: POST, path: "/transfers"}
            action: transact
            transaction: {amount: "$.amount", currency: "$.currency", payee: "$.to_account"}
    """
)


def policy() -> Policy:
    return load_policy_text(POLICY, source="policy.yaml")
