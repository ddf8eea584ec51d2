"use strict";

// pytriage's debugger commands: !pytriage, !pooltag and !nblwalk.
//
// Load with `.scriptload <path>\pytriage.js` (pytriage install-debugger-ext prints the path) after pykd
// (`.load pykd`). Each command is a function alias of the debugger's data model; calling it runs
// `!py -m pytriage.pyext.<module> <arguments>` and shows that command's output. A function alias takes
// debugger expressions, so options go in one quoted string:
//     !pytriage "-v"          !pooltag "ffffc08b`e1000070"          !nblwalk "ffffda8a`cc2e02b0 --max 10"
// A bare number is taken as an address: !nblwalk 0xffffda8acc2e02b0

function toArguments(value) {
    if (value === undefined || value === null) {
        return "";
    }
    if (typeof value === "string") {
        return value;
    }
    // a number or a 64-bit value from the expression evaluator (host.Int64 has toString(radix))
    return "0x" + value.toString(16);
}

function forward(module, value) {
    var text = ("!py -m pytriage.pyext." + module + " " + toArguments(value)).trim();
    var lines = host.namespace.Debugger.Utility.Control.ExecuteCommand(text);
    for (var line of lines) {
        host.diagnostics.debugLog(line + "\n");
    }
}

function pytriage(value) {
    forward("pytriage", value);
}

function pooltag(value) {
    forward("pooltag", value);
}

function nblwalk(value) {
    forward("nblwalk", value);
}

function initializeScript() {
    return [
        new host.apiVersionSupport(1, 7),
        new host.functionAlias(pytriage, "pytriage"),
        new host.functionAlias(pooltag, "pooltag"),
        new host.functionAlias(nblwalk, "nblwalk"),
    ];
}
