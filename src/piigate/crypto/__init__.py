from piigate.crypto.keyring import DecryptionError, Keyring, KeyringError
from piigate.crypto.secret import Secret

__all__ = ["DecryptionError", "Keyring", "KeyringError", "Secret"]
