"""The image a container is made from: found in the store, or pulled as ``--pull`` says."""

from __future__ import annotations

from ketch.errors import InvalidInputError, KetchError, NotFoundError


def find_or_pull(store, name: str, policy: str = "missing", context=None, trust_policy=None, progress=None):
    """The store's image record for ``name`` (``context``: a SystemContext, or a function making
    one when a pull needs it). ``policy``: ``never`` (the store only), ``missing``
    (pull when the store lacks it), ``always``/``newer`` (pull first; ``newer`` falls back to the
    store's copy when the registry cannot be reached)."""
    if policy not in ("always", "missing", "never", "newer"):
        raise InvalidInputError(f"invalid pull policy {policy!r}: must be always, missing, never or newer")
    if policy in ("missing", "never"):
        try:
            return store.lookup(name)
        except NotFoundError as exc:
            if policy == "never":
                raise NotFoundError(f"{name}: image not known") from exc
    try:
        return store.lookup(pull(store, name, context, trust_policy, progress))
    except KetchError:
        if policy == "newer":
            return store.lookup(name)
        raise


def pull(store, name: str, context=None, trust_policy=None, progress=None) -> str:
    """Pull ``name`` (short names through registries.conf) into the store; the image id."""
    from ketch.image.context import SystemContext
    from ketch.image.policy import Policy
    from ketch.image.storage_transport import pull as pull_into

    ctx = (context() if callable(context) else context) or SystemContext()
    if trust_policy is None:  # (the context's: the global --signature-policy / --insecure-policy)
        if ctx.insecure_policy:
            trust_policy = Policy.insecure_accept_anything()
        elif ctx.signature_policy_path:
            trust_policy = Policy.load(ctx.signature_policy_path)
        else:
            trust_policy = Policy.load_default()
    return pull_into(store, name, ctx, trust_policy, progress)
