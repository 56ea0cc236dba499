import Foundation
import Testing
import TrainerCore

@Suite struct AccountRulesTests {
    @Test func emailsAreNormalised() {
        #expect(AccountRules.normalizedEmail("  Ada@Example.COM ") == "ada@example.com")
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "ada@@example.com", "ada@.example.com", "ada@example.com\u{0}"] {
            #expect(AccountRules.normalizedEmail(bad) == nil, "\(bad) was accepted")
        }
    }

    @Test func passwordsNeedTenCharactersAndAtMost72Bytes() {
        #expect(AccountRules.passwordProblem("short") != nil)
        #expect(AccountRules.passwordProblem("long enough") == nil)
        #expect(AccountRules.passwordProblem(String(repeating: "é", count: 37))?.contains("72 bytes") == true)
        #expect(AccountRules.passwordProblem(String(repeating: "x", count: 72)) == nil)
    }
}
