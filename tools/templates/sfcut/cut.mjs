// Cuts FluidR3_GM (MIT) down to the five melody instruments undertone renders with
// rustysynth (music::Instrument), and folds each stereo L/R sample pair into its
// left (mono, centred) sample: a melody line does not need the stereo image, and
// it halves the font, which rustysynth holds in memory (rendering RSS <= 64 MB).
//
// usage: node cut.mjs IN.sf2 OUT.sf2
import { readFileSync, writeFileSync } from "node:fs";
import { SoundBankLoader } from "spessasynth_core";

// GM programs kept, one per music::Instrument (the renderer's table must agree:
// firmware/src/render/synth.rs MELODY_PROGRAMS).
const KEEP = new Map([
  [0, "piano"], // Yamaha Grand Piano
  [24, "guitar"], // Nylon String Guitar
  [48, "strings"], // Strings
  [81, "synth"], // Saw Wave
  [73, "flute"], // Flute
]);
const PAN = 17; // SF2 generator: pan

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node cut.mjs IN.sf2 OUT.sf2");
  process.exit(2);
}
const bank = SoundBankLoader.fromArrayBuffer(readFileSync(input).buffer);
for (const p of [...bank.presets]) {
  if (p.isGMGSDrum || p.bankMSB !== 0 || p.bankLSB !== 0 || !KEEP.has(p.program)) bank.deletePreset(p);
}
const kept = bank.presets.map((p) => `${p.program}:${p.name}`);
if (kept.length !== KEEP.size) {
  console.error(`expected ${KEEP.size} presets, kept ${kept.join(", ")}`);
  process.exit(1);
}
// Fold stereo pairs: drop the zone of a right-channel sample when its key range also
// has a left-channel zone, and centre the left one.
let folded = 0;
const instruments = new Set();
for (const p of bank.presets) for (const z of p.zones) instruments.add(z.instrument);
for (const inst of instruments) {
  const zones = inst.zones;
  // FluidR3 names pairs "Strings G2L"/"Strings G2R" and "Flute E4(L)"/"Flute E4(R)".
  const leftName = (name) => (name.endsWith("(R)") ? name.slice(0, -3) + "(L)" : name.endsWith("R") ? name.slice(0, -1) + "L" : null);
  const isLeft = (name) => name.endsWith("L") || name.endsWith("(L)");
  const hasLeft = (kr, vr, left) =>
    zones.some((z) => z.sample.name === left && z.keyRange.min === kr.min && z.keyRange.max === kr.max && z.velRange.min === vr.min && z.velRange.max === vr.max);
  for (let i = zones.length - 1; i >= 0; i--) {
    const z = zones[i];
    const name = z.sample.name;
    const left = leftName(name);
    if (left && hasLeft(z.keyRange, z.velRange, left)) {
      inst.deleteZone(i, true);
      folded++;
    }
  }
  for (const z of inst.zones) if (isLeft(z.sample.name)) z.setGenerator(PAN, null);
}
bank.removeUnusedElements();
bank.soundBankInfo.name = "undertone melody (FluidR3_GM cut)";
bank.soundBankInfo.comment = "Cut from FluidR3_GM (Frank Wen, MIT licence) by undertone tools/templates/sfcut/cut.mjs: presets " + kept.join(", ");
const out = bank.writeSF2({ writeDefaultModulators: false, writeExtendedLimits: false });
writeFileSync(output, Buffer.from(out));
console.log(`kept ${kept.join(", ")}; folded ${folded} stereo zones; ${bank.samples.length} samples; ${(out.byteLength / 1e6).toFixed(1)} MB`);
