"""SQLAlchemy models, one module per area; import them all here so Alembic
and ``Base.metadata`` see every table."""

from app.models.admin import (
    LoginAttempt,
    PasswordLink,
    PasswordLinkKind,
    Role,
    RuntimeSetting,
    User,
)
from app.models.base import Base
from app.models.bounce_mailbox import BounceMailboxCheckpoint
from app.models.bounces import (
    BounceEvent,
    BounceMessage,
    MessageOutcome,
    Suppression,
    SuppressionReason,
    SuppressionRemoval,
)
from app.models.campaigns import (
    Campaign,
    CampaignTrackingUrl,
    CampaignType,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    SenderProfile,
    campaign_excluding_lists,
    campaign_target_lists,
)
from app.models.contacts import (
    AUDIENCE_TYPES,
    Contact,
    EmailStatus,
    SavedFilter,
    TargetList,
    TargetListMember,
)
from app.models.digests import BounceDigestState
from app.models.events import CampaignLogEntry, CampaignLogEvent
from app.models.imports import ContactImport as ContactImport
from app.models.jobs import JobRun, JobRunOutcome, Runner
from app.models.pacing import DomainGroup, DomainThrottle
from app.models.queue import BounceKind, QueueItem, QueueItemStatus, SendAttempt, TrackedLink

__all__ = [
    "AUDIENCE_TYPES",
    "Base",
    "BounceDigestState",
    "BounceEvent",
    "BounceKind",
    "BounceMailboxCheckpoint",
    "BounceMessage",
    "Campaign",
    "CampaignLogEntry",
    "CampaignLogEvent",
    "CampaignTrackingUrl",
    "CampaignType",
    "Contact",
    "DomainGroup",
    "DomainThrottle",
    "EmailStatus",
    "EmailTemplate",
    "JobRun",
    "JobRunOutcome",
    "LoginAttempt",
    "MassEmail",
    "MassEmailStatus",
    "MessageOutcome",
    "PasswordLink",
    "PasswordLinkKind",
    "QueueItem",
    "QueueItemStatus",
    "Role",
    "Runner",
    "RuntimeSetting",
    "SavedFilter",
    "SendAttempt",
    "SenderProfile",
    "Suppression",
    "SuppressionReason",
    "SuppressionRemoval",
    "TargetList",
    "TargetListMember",
    "TrackedLink",
    "User",
    "campaign_excluding_lists",
    "campaign_target_lists",
]
