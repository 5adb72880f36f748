"""One error tree for the whole service. Each class knows its HTTP status and message."""

from __future__ import annotations

from typing import Any, ClassVar


class CinderblockError(Exception):
    """Base of every error we raise on purpose."""

    code: ClassVar[int] = 500
    message_template: ClassVar[str] = "An unknown error occurred."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        if message is None:
            try:
                message = self.message_template % kwargs if kwargs else self.message_template
            except (KeyError, TypeError):
                message = self.message_template
        self.msg = message
        self.kwargs = kwargs
        super().__init__(message)


# ---- 400 -------------------------------------------------------------------
class Invalid(CinderblockError):
    code = 400
    message_template = "Unacceptable parameters."


class InvalidInput(Invalid):
    message_template = "Invalid input received: %(reason)s"


class InvalidVolume(Invalid):
    message_template = "Invalid volume: %(reason)s"


class InvalidSnapshot(Invalid):
    message_template = "Invalid snapshot: %(reason)s"


class InvalidVolumeType(Invalid):
    message_template = "Invalid volume type: %(reason)s"


class InvalidAvailabilityZone(Invalid):
    message_template = "Availability zone '%(az)s' is invalid."


class InvalidSortKey(Invalid):
    message_template = "Invalid input received: Invalid sort key"


class ServiceUnavailable(Invalid):
    # Cinder maps this to 400, not 503; clients depend on it.
    message_template = "Service is unavailable at this time."


class ValidationError(Invalid):
    """JSON-schema failure; the message is already formatted."""


class MalformedRequestBody(Invalid):
    message_template = "Malformed request body"


class InvalidMicroversion(Invalid):
    message_template = (
        "API Version String %(version)s is of invalid format. Must be of format MajorNum.MinorNum."
    )


class MetadataMismatch(Invalid):
    pass


# ---- 401 / 403 -------------------------------------------------------------
class NotAuthenticated(CinderblockError):
    code = 401
    message_template = "Authentication required"


class PolicyNotAuthorized(CinderblockError):
    code = 403
    message_template = "Policy doesn't allow %(action)s to be performed."


# ---- 404 -------------------------------------------------------------------
class NotFound(CinderblockError):
    code = 404
    message_template = "Resource could not be found."


class ResourceNotFound(NotFound):
    message_template = "The resource could not be found."


class VolumeNotFound(NotFound):
    message_template = "Volume %(volume_id)s could not be found."


class SnapshotNotFound(NotFound):
    message_template = "Snapshot %(snapshot_id)s could not be found."


class VolumeTypeNotFound(NotFound):
    message_template = "Volume type %(volume_type_id)s could not be found."


class VolumeTypeNotFoundByName(VolumeTypeNotFound):
    message_template = "Volume type with name %(volume_type_name)s could not be found."


class VolumeTypeExtraSpecsNotFound(NotFound):
    message_template = "Volume Type %(volume_type_id)s has no extra specs with key %(key)s."


class VolumeMetadataNotFound(NotFound):
    message_template = "Volume %(volume_id)s has no metadata with key %(key)s."


class SnapshotMetadataNotFound(NotFound):
    message_template = "Snapshot %(snapshot_id)s has no metadata with key %(key)s."


class MessageNotFound(NotFound):
    message_template = "Message %(message_id)s could not be found."


class ServiceNotFound(NotFound):
    message_template = "Service %(service_id)s could not be found."


# ---- 406 / 409 / 412 / 413 -------------------------------------------------
class VersionNotAcceptable(CinderblockError):
    code = 406
    message_template = (
        "Version %(version)s is not supported by the API. Minimum is %(min)s and "
        "maximum is %(max)s."
    )


class Conflict(CinderblockError):
    code = 409
    message_template = "Conflicting request."


class VolumeTypeExists(Conflict):
    message_template = "Volume Type %(name)s already exists."


class VolumeServiceUnreachable(CinderblockError):
    """A synchronous call to a volume service got no answer: it is down or stuck."""

    code = 503
    message_template = "The volume service %(host)s did not answer in time; try again later."


class PreconditionFailed(CinderblockError):
    code = 412
    message_template = "Precondition failed."


class OverLimit(CinderblockError):
    code = 413
    message_template = "Request is too large."


class MetadataLimitExceeded(OverLimit):
    message_template = "Maximum number of metadata items exceeds %(allowed)d"


# ---- driver-side errors (drivers raise these; the manager records them) ----
class DriverError(CinderblockError):
    """Base for errors a volume driver raises. Never shown raw to API callers."""

    message_template = "Backend error: %(reason)s"


class VolumeBackendAPIException(DriverError):
    message_template = "Bad or unexpected response from the storage volume backend API: %(data)s"


class VolumeDriverNotInitialized(DriverError):
    message_template = "Volume driver not ready."


class BackendObjectNotFound(DriverError):
    message_template = "Backend object %(name)s was not found."


class VolumeIsBusy(DriverError):
    message_template = "deleting volume %(volume_name)s that has snapshot"


class SnapshotIsBusy(DriverError):
    message_template = "deleting snapshot %(snapshot_name)s that has dependent volumes"


class ManageExistingInvalidReference(DriverError):
    code = 400
    message_template = (
        "Manage existing volume failed due to invalid backend reference %(existing_ref)s: "
        "%(reason)s"
    )


class ManageExistingVolumeTypeMismatch(DriverError):
    code = 400
    message_template = "Manage existing volume failed due to volume type mismatch: %(reason)s"


class InvalidConnectorException(DriverError):
    code = 400
    message_template = "Connector doesn't have required information: %(missing)s"


class UnsupportedOperation(DriverError):
    code = 400
    message_template = "The backend does not support %(operation)s."


# ---- quotas (413) ------------------------------------------------------------
class QuotaError(OverLimit):
    """Over quota. Cinder shows these as '<ClassName>: <message>'; `reason` is the bare text."""

    message_template = "Quota exceeded: code=%(code)s"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = self.msg
        self.msg = f"{type(self).__name__}: {self.msg}"
        self.args = (self.msg,)


class VolumeSizeExceedsAvailableQuota(QuotaError):
    message_template = (
        "Requested volume or snapshot exceeds allowed %(name)s quota. Requested "
        "%(requested)sG, quota is %(quota)sG and %(consumed)sG has been consumed."
    )


class VolumeSizeExceedsLimit(QuotaError):
    message_template = (
        "Requested volume size %(size)dG is larger than maximum allowed limit %(limit)dG."
    )


class VolumeLimitExceeded(QuotaError):
    message_template = (
        "Maximum number of volumes allowed (%(allowed)d) exceeded for quota '%(name)s'."
    )


class SnapshotLimitExceeded(QuotaError):
    message_template = "Maximum number of snapshots allowed (%(allowed)d) exceeded"
