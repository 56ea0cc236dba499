import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// A small XML tree, enough for S3's responses and requests. Namespaces are ignored: S3 puts its
/// elements in a default namespace that carries no meaning for us.
struct XMLNode: Sendable, Equatable {
    var name: String
    var text: String = ""
    var children: [XMLNode] = []

    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    func children(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }
    func value(_ name: String) -> String? { child(name)?.text }

    static func parse(_ data: Data) -> XMLNode? {
        let delegate = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = delegate
        parser.shouldProcessNamespaces = false
        guard parser.parse() else { return nil }
        return delegate.root
    }

    /// Serialises with an XML declaration; text is escaped.
    func document(namespace: String? = "http://s3.amazonaws.com/doc/2006-03-01/") -> String {
        #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n" + render(namespace: namespace)
    }

    private func render(namespace: String?) -> String {
        let open = namespace.map { "<\(name) xmlns=\"\($0)\">" } ?? "<\(name)>"
        if children.isEmpty { return open + Self.escape(text) + "</\(name)>" }
        return open + children.map { $0.render(namespace: nil) }.joined() + "</\(name)>"
    }

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            case "\r": result += "&#13;"
            default:
                // Characters XML 1.0 cannot carry at all are written as character references.
                if scalar.value < 0x20, scalar != "\n", scalar != "\t" { result += "&#\(scalar.value);" } else { result.unicodeScalars.append(scalar) }
            }
        }
        return result
    }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        var stack: [XMLNode] = []
        var root: XMLNode?

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            let local = name.split(separator: ":").last.map(String.init) ?? name
            stack.append(XMLNode(name: local))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if !stack.isEmpty { stack[stack.count - 1].text += string }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            guard let node = stack.popLast() else { return }
            if stack.isEmpty { root = node } else { stack[stack.count - 1].children.append(node) }
        }
    }
}

extension XMLNode {
    init(_ name: String, _ text: String) {
        self.init(name: name, text: text)
    }

    init(_ name: String, children: [XMLNode]) {
        self.init(name: name, text: "", children: children)
    }
}
