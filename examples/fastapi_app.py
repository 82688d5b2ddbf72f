"""A FastAPI app whose endpoints ask piigate first (README: "In your Python app").

    PIIGATE_KEY=pgk_... IDP_ISSUER=... IDP_AUDIENCE=... IDP_JWKS_URL=... \\
        uvicorn --factory fastapi_app:from_env --app-dir examples
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from piigate.identity import JwtValidator
from piigate.integrations import PiigateClient, Verdict, configure, mask, require_pii

# What an endpoint touches; the verdict is its argument.
ReadsSsn = Annotated[
    Verdict, Depends(require_pii("ssn", resource_type="customer", resource_id_param="id"))
]
EditsSsn = Annotated[
    Verdict,
    Depends(require_pii("ssn", action="update", resource_type="customer", resource_id_param="id")),
]


class Customer(BaseModel):
    ssn: str


def create_app(**piigate: Any) -> FastAPI:
    """``piigate``: the engine (``client=`` or ``engine=``) and who calls (``identity=``)."""
    app = FastAPI()
    configure(app, **piigate)

    @app.get("/customers/{id}")
    async def read_customer(id: str, verdict: ReadsSsn) -> Any:
        return mask({"id": id, "ssn": "123-45-6789"}, {"$.ssn": "ssn"}, verdict)

    @app.put("/customers/{id}")
    async def edit_customer(id: str, new: Customer, verdict: EditsSsn) -> Any:
        return {"id": id, "saved": True}

    return app


def from_env() -> FastAPI:
    piigate = PiigateClient(
        os.environ.get("PIIGATE_URL", "http://127.0.0.1:8080"), os.environ["PIIGATE_KEY"]
    )
    idp = JwtValidator(
        os.environ["IDP_ISSUER"], os.environ["IDP_AUDIENCE"], os.environ["IDP_JWKS_URL"]
    )
    return create_app(client=piigate, identity=idp)
