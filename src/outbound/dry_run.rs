//! A Connect directory that can be told not to write: with dry run on, every read goes
//! to Connect as usual and `UpdateUserIdentityInfo` is answered here, unsent (SPEC §7).

use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::{IdentityManagement, UpdatePlan};
use crate::domain::ports::{CallFailure, Directory, UserRecord};

pub struct DryRunnable<D> {
    inner: D,
    dry_run: bool,
}

impl<D> DryRunnable<D> {
    pub fn new(inner: D, dry_run: bool) -> Self {
        DryRunnable { inner, dry_run }
    }
}

impl<D: Directory> Directory for DryRunnable<D> {
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
