/// This build's version, reported by workers in each attempt's record and by `gomodel --version`.
public enum GomodelVersion {
    public static let current = "0.18.0"
}
