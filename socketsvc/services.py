"""The domain services of one process, built once and handed to the namespaces."""

from __future__ import annotations

from dataclasses import dataclass

from socketsvc.bots.base import Bot
from socketsvc.domain.bot_dispatch import BotDispatch
from socketsvc.domain.bot_runner import RUNNER_TIMEOUT, BotRunner
from socketsvc.domain.conversations import ConversationService
from socketsvc.domain.limits import ConnectionGate
from socketsvc.domain.ports import WorkerChannel
from socketsvc.domain.presence import STALE_SECONDS, PresenceService
from socketsvc.domain.privacy import PrivacyService
from socketsvc.domain.routing import RoutingService
from socketsvc.domain.tokens import AgentKeys, TokenService
from socketsvc.runtime.lifecycle import Lifecycle
from socketsvc.runtime.tasks import TaskTracker
from socketsvc.settings import Settings
from socketsvc.storage import outages
from socketsvc.storage.bot_deliveries import BotDeliveryStore
from socketsvc.storage.presence import PresenceStore
from socketsvc.storage.privacy import PrivacyStore
from socketsvc.storage.store import Store
from socketsvc.transport.broadcast import Broadcaster


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenService
    conversations: ConversationService
    routing: RoutingService
    presence: PresenceService
    bot_runner: BotRunner
    tasks: TaskTracker
    lifecycle: Lifecycle
    gate: ConnectionGate
    privacy: PrivacyService
    bot_dispatch: BotDispatch | None = None
    """The external bot's deliveries to `/bot` workers (`BOT=workers:NAME`), else None."""

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        broadcaster: Broadcaster,
        bot: Bot,
        channel: WorkerChannel | None = None,
    ) -> Services:
        """`channel` reaches this process's `/bot` workers (needed with `BOT=workers:NAME`)."""
        tasks = TaskTracker()
        tokens = tokens_for(settings)
        conversations = ConversationService(store, broadcaster, tokens, bot)
        presence_store = PresenceStore(store, stale=STALE_SECONDS)
        routing = RoutingService(store, presence_store, conversations, broadcaster)
        presence = PresenceService(
            presence_store, routing, settings.agent_grace_seconds, broadcaster
        )
        # A bot with a deadline of its own (BOT_TIMEOUT: the webhook bot's, then its fallback)
        # must reach it before the runner gives up on it.
        timeout = max(RUNNER_TIMEOUT, settings.bot_timeout + 5.0)
        bot_runner = BotRunner(store, conversations, routing, bot, tasks, timeout=timeout)
        conversations.on_visitor_message = bot_runner.schedule
        dispatch = None
        if settings.bot_workers is not None:
            if channel is None:
                raise ValueError("BOT=workers:NAME needs a channel to the /bot workers")
            dispatch = BotDispatch(
                BotDeliveryStore(store),
                store,
                conversations,
                routing,
                bot_runner,
                channel,
                tasks,
                bot=settings.bot_workers,
                fallback=settings.bot_fallback,
                timeout=settings.bot_timeout,
                redelivery=settings.bot_redelivery_timeout,
            )
            conversations.on_visitor_message = dispatch.schedule
        return cls(
            settings,
            store,
            tokens,
            conversations,
            routing,
            presence,
            bot_runner,
            tasks,
            Lifecycle(),
            ConnectionGate(
                settings.connect_rate, settings.max_connections_per_ip, settings.max_connections
            ),
            privacy_for(settings, store, tokens),
            dispatch,
        )

    def refused(self, what: outages.Refusal) -> None:
        """Count an event or connect answered `unavailable` because the database is away (the
        outage's end line reports them)."""
        outages.refused(what)


def tokens_for(settings: Settings) -> TokenService:
    """The token service configured by the settings (secret, agent keys, identity secret)."""
    return TokenService(
        settings.secret,
        settings.visitor_token_ttl,
        AgentKeys(
            algorithm=settings.agent_jwt_algorithm,
            public_key=settings.agent_jwt_public_key,
            issuer=settings.agent_jwt_issuer,
            audience=settings.agent_jwt_audience,
        ),
        identity_secret=settings.identity_secret,
        bot_keys=settings.bot_keys,
    )


def privacy_for(
    settings: Settings, store: Store, tokens: TokenService | None = None
) -> PrivacyService:
    """Export, erasure and retention over `store` (also what `socketsvc visitor` uses)."""
    return PrivacyService(
        PrivacyStore(store), tokens or tokens_for(settings), settings.retention_days
    )
