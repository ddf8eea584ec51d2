// A small fake of WinDbg's JavaScript `host` (just what pytriage.js uses), to run the extension under node.
// Prints one JSON document: the aliases initializeScript registered and, per call, the command executed and
// the lines logged. Usage: node js_host.js path/to/pytriage.js
"use strict";
const fs = require("fs");
const vm = require("vm");

const executed = [];
const logged = [];
class FunctionAlias { constructor(fn, name) { this.fn = fn; this.name = name; } }
class ApiVersionSupport { constructor(major, minor) { this.major = major; this.minor = minor; } }
const host = {
    functionAlias: FunctionAlias,
    apiVersionSupport: ApiVersionSupport,
    diagnostics: { debugLog: (text) => logged.push(text) },
    namespace: { Debugger: { Utility: { Control: { ExecuteCommand: (command) => {
        executed.push(command);
        return ["line one of " + command.split(" ")[2], "line two"];
    } } } } },
};
// a 64-bit value as the expression evaluator passes it: an object with toString(radix)
const int64 = { toString: (radix) => (radix === 16 ? "ffffda8acc2e02b0" : "18446702888398750384") };

const context = vm.createContext({ host });
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context, { filename: process.argv[2] });
const registered = vm.runInContext("initializeScript()", context);
const aliases = registered.filter((r) => r instanceof FunctionAlias).map((r) => r.name);
const versions = registered.filter((r) => r instanceof ApiVersionSupport).map((r) => [r.major, r.minor]);
const calls = [];
for (const r of registered.filter((x) => x instanceof FunctionAlias)) {
    for (const arg of [undefined, "-v --json", int64]) {
        executed.length = 0;
        logged.length = 0;
        r.fn(arg);
        calls.push({ alias: r.name, executed: executed.slice(), logged: logged.slice() });
    }
}
process.stdout.write(JSON.stringify({ aliases, versions, calls }));
