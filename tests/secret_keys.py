"""The keys of the stored secrets in tests that build stores without the composition root (which makes
its own key file under the data dir). Fixed test keys, never used anywhere else."""

from __future__ import annotations

from connectors.secret_box import SecretBox

TEST_SECRET_KEYS = ("Yt4Hq6xXbO5m0qZ9o1yK2m8dT3n7fR4sW6vB0cE1gHk=",)
TEST_BOX = SecretBox(TEST_SECRET_KEYS)
