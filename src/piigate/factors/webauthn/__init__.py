"""WebAuthn (passkeys, security keys, platform biometrics): options and response verification
over py_webauthn (``protocol``, pure) and the registration and step-up ceremonies (``ceremony``).
"""
