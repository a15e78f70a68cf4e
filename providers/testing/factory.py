"""How the conformance suite gets fresh, empty providers to test."""

from __future__ import annotations

import abc
from collections.abc import Callable

from durox.providers.base import Provider
from durox.providers.testing.clock import ManualClock

__all__ = ["ProviderFactory"]


class ProviderFactory(abc.ABC):
    """Makes the providers one conformance run tests.

    Subclass it for your own provider::

        class MyFactory(ProviderFactory):
            def create(self, clock):
                return MyProvider(clock=clock.now_ms)

    Every check calls :meth:`create` for a fresh, *empty* store and
    :meth:`destroy` on it when done (pass or fail).
    """

    supports_multiprocess: bool = False
    """True if :meth:`reopen_spec` lets another process open the same store."""

    @abc.abstractmethod
    def create(self, clock: ManualClock) -> Provider:
        """A new provider on a new, empty store, judging time by ``clock``."""

    def destroy(self, provider: Provider) -> None:
        """Close ``provider`` and remove its store (files, schemas). Default: close it."""
        provider.close()

    def reopen_spec(self, provider: Provider) -> Callable[[], Provider]:
        """A picklable zero-argument callable that opens ``provider``'s store in another process.

        The child runs on the wall clock. Only called when
        :attr:`supports_multiprocess` is true.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support several processes")

    def close(self) -> None:
        """Release whatever the factory itself holds. Default: nothing."""
        return None
