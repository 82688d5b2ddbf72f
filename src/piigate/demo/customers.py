"""A sample customer API with synthetic PII: what the HTTP gateway protects in the demo, the
README's walkthrough and the end-to-end tests.

``python -m piigate.demo.customers [--host H] [--port 9000]`` serves, in memory:

- ``GET /customers`` → ``{"customers": [...]}``; ``GET /customers/{id}`` → one record with
  ``ssn``, ``passport_number``, ``bank.account``, ``phone``, ``address``;
- ``PUT``/``PATCH /customers/{id}`` (merge the JSON body), ``DELETE /customers/{id}``;
- ``POST /transfers`` ``{"amount", "currency", "to_account"}`` → 201 with the transfer;
- ``GET /health``; ``GET /files/{n}`` → ``n`` bytes (at most 64 MiB) in 64 KiB chunks;
- ``GET /whoami`` → the verified subject and level a gateway in front sent
  (``PIIGate-Subject``, ``PIIGate-Level``), as this API received them.

It holds the 300 customers of ``demo/synthetic.py``, the same on every start: every value is
made up (SSNs in the 900 range, which are never issued; IBANs with valid check digits over
made-up banks; phone numbers in the 555-01xx range reserved for fiction).
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from piigate.demo.synthetic import synthetic_customers

__all__ = ["create_customers_app", "main", "sample_customers"]

MAX_FILE = 64 * 1024 * 1024
CHUNK = 64 * 1024


def sample_customers() -> dict[str, dict[str, Any]]:
    """The synthetic customers (``demo/synthetic.py``), by id."""
    return {customer["id"]: customer for customer in synthetic_customers()}


def create_customers_app() -> Starlette:
    """The API over a fresh copy of the sample customers (each app has its own)."""
    api = _Customers(sample_customers())
    return Starlette(
        routes=[
            Route("/customers", api.list_customers, methods=["GET"]),
            Route("/customers/{id}", api.get_customer, methods=["GET"]),
            Route("/customers/{id}", api.change_customer, methods=["PUT", "PATCH"]),
            Route("/customers/{id}", api.delete_customer, methods=["DELETE"]),
            Route("/transfers", api.create_transfer, methods=["POST"]),
            Route("/health", _health, methods=["GET"]),
            Route("/whoami", _whoami, methods=["GET"]),
            Route("/files/{n:int}", _file, methods=["GET"]),
        ]
    )


class _Customers:
    """The handlers over one app's records (customers by id, transfers in order)."""

    def __init__(self, customers: dict[str, dict[str, Any]]) -> None:
        self.customers = customers
        self.transfers: list[dict[str, Any]] = []

    async def list_customers(self, request: Request) -> Response:
        return JSONResponse({"customers": list(self.customers.values())})

    async def get_customer(self, request: Request) -> Response:
        found = self.customers.get(request.path_params["id"])
        if found is None:
            return _no_such_customer()
        return JSONResponse(found)

    async def change_customer(self, request: Request) -> Response:
        cid = request.path_params["id"]
        if cid not in self.customers:
            return _no_such_customer()
        body = await _json(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "a JSON object is expected"}, status_code=400)
        record = copy.deepcopy(self.customers[cid])
        record.update({k: v for k, v in body.items() if k != "id"})
        self.customers[cid] = record
        return JSONResponse(record)

    async def delete_customer(self, request: Request) -> Response:
        if self.customers.pop(request.path_params["id"], None) is None:
            return _no_such_customer()
        return Response(status_code=204)

    async def create_transfer(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict) or "amount" not in body:
            return JSONResponse({"error": "amount is required"}, status_code=400)
        transfer = {
            "id": f"t{len(self.transfers) + 1}",
            "amount": str(body["amount"]),
            "currency": body.get("currency"),
            "to_account": body.get("to_account"),
        }
        self.transfers.append(transfer)
        return JSONResponse(transfer, status_code=201)


def _no_such_customer() -> Response:
    return JSONResponse({"error": "no such customer"}, status_code=404)


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _whoami(request: Request) -> Response:
    headers = request.headers
    return JSONResponse(
        {"subject": headers.get("piigate-subject"), "level": headers.get("piigate-level")}
    )


async def _file(request: Request) -> Response:
    size = min(int(request.path_params["n"]), MAX_FILE)
    return StreamingResponse(
        _zeros(size),
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )


async def _json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


async def _zeros(size: int) -> AsyncIterator[bytes]:
    block = b"\0" * CHUNK
    while size > 0:
        yield block[: min(size, CHUNK)]
        size -= CHUNK


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The piigate demo's sample customer API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    uvicorn.run(create_customers_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
