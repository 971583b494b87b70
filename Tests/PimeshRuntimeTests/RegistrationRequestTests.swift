import PimeshCore
import PimeshServer
import Testing

@testable import PimeshRuntime

@Suite struct RegistrationRequestTests {
    func validate(_ text: String) throws -> RegistrationRequest {
        try RegistrationRequest.validate(try JSONValue.parse(Array(text.utf8)))
    }

    func field(_ text: String) -> String?? {
        do {
            _ = try validate(text)
            return .none
        } catch let error as APIError {
            #expect(error.status == .badRequest)
            return .some(error.field)
        } catch {
            return .none
        }
    }

    @Test func validBodyWithDefaults() throws {
        #expect(try validate(#"{"name": "cam-1"}"#) == RegistrationRequest(name: "cam-1", agentClass: .local, capabilities: []))
        #expect(
            try validate(#"{"name": "gpu.0", "class": "CLASS_D_GPU", "capabilities": ["infer", "infer", "embed"]}"#)
                == RegistrationRequest(name: "gpu.0", agentClass: .gpu, capabilities: ["infer", "embed"]))
    }

    @Test(arguments: [
        (#"{}"#, "name"),
        (#"{"name": 5}"#, "name"),
        (#"{"name": ""}"#, "name"),
        (#"{"name": "a b"}"#, "name"),
        // An id's form (any case) would be taken for that agent by every lookup.
        (#"{"name": "50a2a8f8-094e-43ab-8ffb-365810d41965"}"#, "name"),
        (#"{"name": "50A2A8F8-094E-43AB-8FFB-365810D41965"}"#, "name"),
        (#"{"name": "x", "class": "CLASS_Z"}"#, "class"),
        (#"{"name": "x", "class": 3}"#, "class"),
        (#"{"name": "x", "capabilities": "infer"}"#, "capabilities"),
        (#"{"name": "x", "capabilities": ["Infer"]}"#, "capabilities"),
        (#"{"name": "x", "capabilities": [1]}"#, "capabilities"),
        (#"{"name": "x", "secret": "mine"}"#, "secret"),
    ])
    func badFieldsAreNamed(body: String, expected: String) {
        #expect(field(body) == .some(expected))
    }

    @Test func nonObjectBodyHasNoField() {
        #expect(field("[1]") == .some(nil))
        let long = String(repeating: "a", count: 65)
        #expect(field("{\"name\": \"\(long)\"}") == .some("name"))
    }
}
