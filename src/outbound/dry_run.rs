//! Ports that can be told not to write: with dry run on, every read goes to Connect and
//! the watermark table as usual, `UpdateUserIdentityInfo` is answered here unsent, and
//! the watermark table's lease is given up without moving a watermark (SPEC §7).

use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::{IdentityManagement, UpdatePlan};
use chrono::{DateTime, Utc};

use crate::domain::ports::{
    CallFailure, Directory, Lease, Leased, UserPage, UserRecord, Watermarks,
};
use crate::domain::watermark::FieldWatermarks;

pub struct DryRunnable<D> {
    inner: D,
    dry_run: bool,
}

impl<D> DryRunnable<D> {
    pub fn new(inner: D, dry_run: bool) -> Self {
        DryRunnable { inner, dry_run }
    }
}

/// Every read and cache goes to the wrapped directory as it is; only the update is
/// answered here when dry run is on.
impl<D: Directory> Directory for DryRunnable<D> {
    async fn list_users_page(
        &self,
        instance: &InstanceId,
        next_token: Option<&str>,
    ) -> Result<UserPage, CallFailure> {
        self.inner.list_users_page(instance, next_token).await
    }

    async fn identity_management(
        &self,
        instance: &InstanceId,
    ) -> Result<IdentityManagement, CallFailure> {
        self.inner.identity_management(instance).await
    }

    async fn find_user(
        &self,
        instance: &InstanceId,
        username: &str,
    ) -> Result<UserId, CallFailure> {
        self.inner.find_user(instance, username).await
    }

    async fn describe_user(
        &self,
        instance: &InstanceId,
        user: &UserId,
    ) -> Result<UserRecord, CallFailure> {
        self.inner.describe_user(instance, user).await
    }

    async fn update_identity(
        &self,
        instance: &InstanceId,
        user: &UserId,
        plan: &UpdatePlan,
    ) -> Result<(), CallFailure> {
        if self.dry_run {
            tracing::info!(dry_run = true, "UpdateUserIdentityInfo not sent (dry run)");
            return Ok(());
        }
        self.inner.update_identity(instance, user, plan).await
    }
}

impl<W: Watermarks> Watermarks for DryRunnable<W> {
    async fn acquire(
        &self,
        instance: &InstanceId,
        user: &UserId,
        until: DateTime<Utc>,
        intent: &FieldWatermarks,
    ) -> Result<Option<Leased>, CallFailure> {
        // The lease is still taken: a shadow deployment's containers read and judge one
        // user at a time, as the real one does. It applies nothing, so it leaves no
        // intent.
        let none = FieldWatermarks::default();
        let intent = if self.dry_run { &none } else { intent };
        self.inner.acquire(instance, user, until, intent).await
    }

    async fn release(
        &self,
        lease: &Lease,
        advanced: Option<&FieldWatermarks>,
    ) -> Result<(), CallFailure> {
        if self.dry_run && advanced.is_some() {
            tracing::info!(dry_run = true, "watermarks not advanced (dry run)");
            return self.inner.release(lease, None).await;
        }
        self.inner.release(lease, advanced).await
    }

    /// Noted in a dry run too: a shadow deployment defers and hands back as the real
    /// one does, and its own failures are counted the same way.
    async fn note_deferral(&self, message_id: &str, receive: u32) -> Result<(), CallFailure> {
        self.inner.note_deferral(message_id, receive).await
    }

    async fn deferrals(&self, message_id: &str) -> Result<Vec<u32>, CallFailure> {
        self.inner.deferrals(message_id).await
    }
}
