from piigate.crypto.keyring import DecryptionError, Keyring, KeyringError, UnknownKey, open_keyring
from piigate.crypto.masterkey import MasterKey, MasterKeySpec
from piigate.crypto.secret import Secret

__all__ = [
    "DecryptionError",
    "Keyring",
    "KeyringError",
    "MasterKey",
    "MasterKeySpec",
    "Secret",
    "UnknownKey",
    "open_keyring",
]
