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

    @Test func passwordsNeedTenToAThousandAndTwentyFourCharacters() {
        #expect(AccountRules.passwordProblem("short") != nil)
        #expect(AccountRules.passwordProblem("long enough") == nil)
        // Scalars, not bytes or user-perceived characters: JSON Schema's minLength/maxLength count them.
        #expect(AccountRules.passwordProblem(String(repeating: "😀", count: 37)) == nil, "148 bytes are fine: bcrypt gets the SHA-256")
        #expect(AccountRules.passwordProblem(String(repeating: "e\u{301}", count: 5)) == nil, "five é of two scalars each make ten")
        #expect(AccountRules.passwordProblem(String(repeating: "x", count: 1024)) == nil)
        #expect(AccountRules.passwordProblem(String(repeating: "x", count: 1025))?.contains("at most 1024") == true)
    }
}
