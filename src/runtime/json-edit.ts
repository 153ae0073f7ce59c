/**
 * Minimal text edits on a JSON document: set or remove one property of an object while every byte
 * outside that property stays identical (formatting, key order, number spellings such as
 * 12345678901234567890 that JSON.parse would round). jsonc-parser only provides the syntax tree;
 * its own `modify` reformats sibling values, which we must not do to an operator's file.
 */
import { findNodeAtLocation, type Node, type ParseError, parseTree } from 'jsonc-parser';

export type JsonPath = readonly string[];

export function parseTreeStrict(text: string): Node {
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: false, disallowComments: true });
  if (!root || errors.length > 0) throw new Error('syntax error');
  return root;
}

/** Property keys of an object node that occur more than once. */
export function duplicateKeys(obj: Node | undefined): string[] {
  if (obj?.type !== 'object') return [];
  const seen = new Set<string>();
  const dups = new Set<string>();
  for (const prop of obj.children ?? []) {
    const key = String(prop.children?.[0]?.value);
    if (seen.has(key)) dups.add(key);
    seen.add(key);
  }
  return [...dups];
}

export function nodeAt(text: string, path: JsonPath): Node | undefined {
  return findNodeAtLocation(parseTreeStrict(text), [...path]);
}

/** Set `path` (whose parent must be an object, created if missing) to `value`. */
export function setJsonValue(text: string, path: JsonPath, value: unknown): string {
  const root = parseTreeStrict(text);
  const key = path[path.length - 1]!;
  const parentPath = path.slice(0, -1);
  const parent = findNodeAtLocation(root, [...parentPath]);
  if (!parent) {
    // Create the missing parent as an object holding just this property.
    return setJsonValue(text, parentPath, { [key]: value });
  }
  if (parent.type !== 'object') throw new Error(`${parentPath.join('.') || 'top level'} is not an object`);
  const unit = indentUnit(text);
  const existing = (parent.children ?? []).find((p) => p.children?.[0]?.value === key);
  if (existing) {
    const valueNode = existing.children![1]!;
    const inline = isInline(text, parent);
    const rendered = render(value, inline ? '' : lineIndent(text, existing.offset), unit, inline, eolOf(text));
    return splice(text, valueNode.offset, valueNode.length, rendered);
  }
  const props = parent.children ?? [];
  const inline = isInline(text, parent) && props.length > 0;
  const parentIndent = lineIndent(text, parent.offset);
  const eol = eolOf(text);
  if (props.length === 0) {
    const indent = parentIndent + unit;
    const member = `${JSON.stringify(key)}: ${render(value, indent, unit, false, eol)}`;
    return splice(text, parent.offset, parent.length, `{${eol}${indent}${member}${eol}${parentIndent}}`);
  }
  const last = props[props.length - 1]!;
  const end = last.offset + last.length;
  if (inline) {
    return splice(text, end, 0, `, ${JSON.stringify(key)}: ${render(value, '', unit, true, eol)}`);
  }
  const indent = lineIndent(text, last.offset);
  return splice(text, end, 0, `,${eol}${indent}${JSON.stringify(key)}: ${render(value, indent, unit, false, eol)}`);
}

/** Remove the property at `path` if present, with its separating comma. */
export function removeJsonValue(text: string, path: JsonPath): string {
  const root = parseTreeStrict(text);
  const parent = findNodeAtLocation(root, [...path.slice(0, -1)]);
  if (parent?.type !== 'object') return text;
  const key = path[path.length - 1]!;
  const props = parent.children ?? [];
  const i = props.findIndex((p) => p.children?.[0]?.value === key);
  if (i < 0) return text;
  const prop = props[i]!;
  if (props.length === 1) {
    // Only member: leave an empty object, keeping the braces where they were.
    return splice(text, parent.offset, parent.length, '{}');
  }
  if (i > 0) {
    // Remove from the end of the previous member (its trailing comma and whitespace) to our end.
    const prev = props[i - 1]!;
    const start = prev.offset + prev.length;
    return splice(text, start, prop.offset + prop.length - start, '');
  }
  // First of several: remove up to the start of the next member.
  const next = props[i + 1]!;
  return splice(text, prop.offset, next.offset - prop.offset, '');
}

function splice(text: string, offset: number, length: number, insert: string): string {
  return text.slice(0, offset) + insert + text.slice(offset + length);
}

/** Whether an object is written on one line (`{"a": 1}`), so insertions stay on that line. */
function isInline(text: string, obj: Node): boolean {
  return !/[\r\n]/.test(text.slice(obj.offset, obj.offset + obj.length));
}

function lineIndent(text: string, offset: number): string {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart, offset))![0];
}

/** The file's indentation step: the first indented line's leading whitespace, else two spaces. */
function indentUnit(text: string): string {
  const m = /\n([ \t]+)\S/.exec(text);
  return m ? m[1]! : '  ';
}

function eolOf(text: string): string {
  return text.includes('\r\n') ? '\r\n' : '\n';
}

function render(value: unknown, indent: string, unit: string, inline: boolean, eol: string): string {
  if (inline) return JSON.stringify(value);
  const body = JSON.stringify(value, null, unit.includes('\t') ? '\t' : unit.length);
  return body.split('\n').join(eol + indent);
}
