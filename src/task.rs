//! A spawned task that ends with its owner: dropping the guard aborts the task, so a
//! peer, listener or watchdog that goes away cannot leave its helpers running.

pub struct AbortOnDrop<T = ()>(pub tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub fn spawn<F>(future: F) -> Self
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Self(tokio::spawn(future))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_guard_ends_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = AbortOnDrop::spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        drop(guard);
        // The task's sender is dropped with the aborted task.
        assert!(rx.await.is_err());
    }
}
