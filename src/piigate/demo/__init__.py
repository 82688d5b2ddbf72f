"""``piigate demo`` (``stack``) and its parts: the sample customer API with synthetic PII
(``customers``, ``synthetic``), an identity provider (``idp``), its users (``accounts``,
``codes``), the PostgreSQL side (``postgres``) and the walkthrough (``walkthrough``)."""
