import Fluent

/// Every migration, in the order they run. Append only: a released migration never changes.
/// Each uses Fluent's portable schema builder, so the same list runs on SQLite and PostgreSQL.
public enum Migrations {
    public static let all: [any Migration] = [
        M0001CreateUsers(),
        M0002CreateBrowserSessions(),
        M0003CreateAPITokens(),
        M0004CreateLoginThrottles(),
        M0005CreateInvites(),
        M0006CreateDatasets(),
        M0007CreateJobs(),
        M0008CreateWorkerKeys(),
        M0009AddJobWorkerReports(),
        M0010CreateFirstAdministrator(),
        M0011SQLiteWriteAheadLog(),
        M0012WorkerKeyNamesAndRevocation(),
        M0013CreateKnownDevices(),
        M0014CreateDatasetImports(),
        M0015CreateCaptionDrafts(),
        M0016JobPromotedStep(),
        M0017CreateWebhooks(),
        M0018CreateJobAttempts(),
        M0019JobOutputBytes(),
    ]
}
