"""The inputs of the queue module's functions (spec/modules.md §6) and the ``queue``
trigger's config, declared for :mod:`iii_trio.runtime.calls.inputs` (``enqueue`` takes the
shared :class:`~iii_trio.runtime.modules.base.TopicMessage`)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from iii_trio.runtime.calls import inputs

_QUEUE_NOT_SET = inputs.Refusal("queue_not_set", "Queue is not set")


@attrs.frozen(kw_only=True)
class QueueName:
    """``iii::queue::redrive``, ``engine::queue::dlq_messages``: anything but a non-empty
    string ``queue`` is ``queue_not_set``."""

    queue: str = inputs.field(missing=_QUEUE_NOT_SET, wrong=_QUEUE_NOT_SET, blank_is_missing=True)


@attrs.frozen(kw_only=True)
class DeadLetterRef(QueueName):
    """``iii::queue::redrive_message``: a ``message_id`` that names no dead letter (a
    non-string included) is ``message_not_found``."""

    message_id: Any = None


@attrs.frozen(kw_only=True)
class QueueTriggerConfig:
    """A ``queue`` binding: ``{topic, queue_config?, condition_function_id?}``."""

    RULES: ClassVar[inputs.Rules] = inputs.Rules(
        accepts="anything", wrong="queue trigger '{key}' must be {expected}"
    )
    topic: str = inputs.field(
        missing="queue trigger needs a non-empty string 'topic'",
        wrong="queue trigger needs a non-empty string 'topic'",
        blank_is_missing=True,
    )
    queue_config: dict[str, Any] | None = None
    condition_function_id: str | None = None
