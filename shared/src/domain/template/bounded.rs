//! Rendering whose memory is bounded while it runs, not checked afterwards.
//!
//! minijinja bounds the *work* of a render (fuel counts instructions) but not the size of
//! what it builds: `"x" * 50000000` is one instruction, `s ~ s` doubles a string per
//! instruction, and a loop writes its body once per item. So before a template runs, its
//! compiled instructions are rewritten (minijinja's `unstable_machinery`, pinned to one
//! version in the workspace manifest):
//! - `~`, `+` and `*` become calls to [`concat`], [`add`] and [`mul`], which refuse to build
//!   a value over the budget's value limit *before* building it;
//! - raw template text is emitted like an expression, so every byte written goes through
//!   [`format_output`], which counts it against the budget's output limit;
//! - filters that can grow a value out of proportion (`join`, `replace`, `indent`,
//!   `tojson`, `slice`, `batch`, `string`) check their input first; `format` (printf padding) and
//!   the `debug` and `namespace` functions are not available.
//!
//! At compile time minijinja folds constant sub-expressions (`"x" * 50000000` would be built
//! by the compiler itself), so [`check_repetition`] refuses `*` next to a literal string,
//! list or parenthesis before anything is compiled: a folded product is then always a number.
//! Macros, includes and imports are compiled out (the crate's `macros` and `multi_template`
//! features are off).

use std::cell::Cell;
use std::time::{Duration, Instant};

use minijinja::machinery::{Instruction, Instructions, Token, tokenize};
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value, filters};

/// The names the rewritten instructions call. A dot can never appear in a template's own
/// variable names, so a template cannot shadow them.
const CONCAT: &str = "chorus.concat";
const ADD: &str = "chorus.add";
const MUL: &str = "chorus.mul";

/// What one render may build: any single value, and everything written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// The largest value (a string, or a list or map in bytes as text) it may build.
    pub max_value_bytes: usize,
    /// The most it may write, raw text and `{{ … }}` together.
    pub max_output_bytes: usize,
}

thread_local! {
    /// The budget of the render running on this thread. A render is synchronous and never
    /// moves threads, so a thread-local is exactly "the current render".
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    max_value_bytes: usize,
    max_output_bytes: usize,
    output_left: usize,
    /// Set when a limit stopped the render (so its error can say so by kind).
    exceeded: bool,
    /// When the render must have finished: fuel counts instructions, not the work one
    /// filter call does (`range(100000) | unique` in a loop), so every filter and function
    /// call looks at the clock too.
    deadline: Instant,
}

/// The longest a render may take. A real prompt renders in milliseconds; a render that is
/// still going after this is doing work no prompt needs, and holds a worker while it does.
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(2);

/// Runs `render` with `limits` as the current budget (restored afterwards, even if `render`
/// panics, so nested or consecutive renders never see each other's), and tells whether a limit
/// was hit.
pub(super) fn within<T>(limits: RenderLimits, render: impl FnOnce() -> T) -> (T, bool) {
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|cell| cell.set(self.0));
        }
    }
    let budget = Budget {
        max_value_bytes: limits.max_value_bytes,
        max_output_bytes: limits.max_output_bytes,
        output_left: limits.max_output_bytes,
        exceeded: false,
        deadline: Instant::now() + MAX_RENDER_TIME,
    };
    let restore = Restore(BUDGET.with(|cell| cell.replace(Some(budget))));
    let result = render();
    let exceeded = BUDGET.with(Cell::get).is_some_and(|budget| budget.exceeded);
    drop(restore);
    (result, exceeded)
}

/// Marks the current render as stopped by a limit, and returns the error saying which.
fn exceeded(error: Error) -> Error {
    BUDGET.with(|cell| {
        if let Some(mut budget) = cell.get() {
            budget.exceeded = true;
            cell.set(Some(budget));
        }
    });
    error
}

/// Fails once the current render is past its deadline.
fn in_time() -> Result<(), Error> {
    let late = BUDGET.with(|cell| cell.get().is_some_and(|budget| Instant::now() > budget.deadline));
    if late {
        return Err(exceeded(Error::new(
            ErrorKind::InvalidOperation,
            format!("the template did more work than {} s of rendering allows", MAX_RENDER_TIME.as_secs()),
        )));
    }
    Ok(())
}

fn value_limit() -> usize {
    BUDGET.with(|cell| cell.get().map_or(usize::MAX, |budget| budget.max_value_bytes))
}

fn too_large(what: &str, limit: usize) -> Error {
    exceeded(Error::new(ErrorKind::InvalidOperation, format!("{what} would be over the limit of {limit} bytes")))
}

/// Fails unless a value of `size` bytes fits the current value limit.
fn fits(size: usize, what: &str) -> Result<(), Error> {
    let limit = value_limit();
    if size > limit { Err(too_large(what, limit)) } else { Ok(()) }
}

/// The size of `value` as text, counted up to just past `cap` (then it stops looking).
/// Lists and maps count their items, so a list holding one large string many times is as
/// large as its text would be.
pub(super) fn text_size(value: &Value, cap: usize) -> usize {
    match value.kind() {
        ValueKind::String => value.as_str().map_or(0, str::len),
        ValueKind::Undefined | ValueKind::None => 4,
        ValueKind::Bool | ValueKind::Number => 24,
        ValueKind::Bytes => value.as_bytes().map_or(0, <[u8]>::len),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => {
            let mut total = 2usize;
            let Ok(items) = value.try_iter() else { return total };
            for item in items {
                total = total.saturating_add(text_size(&item, cap)).saturating_add(2);
                if value.kind() == ValueKind::Map
                    && let Ok(entry) = value.get_item(&item)
                {
                    total = total.saturating_add(text_size(&entry, cap));
                }
                if total > cap {
                    break;
                }
            }
            total
        }
        _ => 24,
    }
}

fn checked_size(value: &Value, what: &str) -> Result<usize, Error> {
    let limit = value_limit();
    let size = text_size(value, limit);
    if size > limit { Err(too_large(what, limit)) } else { Ok(size) }
}

/// `a ~ b`.
fn concat(a: Value, b: Value) -> Result<Value, Error> {
    in_time()?;
    let size = checked_size(&a, "a joined string")?.saturating_add(checked_size(&b, "a joined string")?);
    fits(size, "a joined string")?;
    Ok(Value::from(format!("{a}{b}")))
}

/// `a + b`: joins strings and lists (bounded), adds numbers.
fn add(a: Value, b: Value) -> Result<Value, Error> {
    in_time()?;
    if matches!(a.kind(), ValueKind::String | ValueKind::Seq) || matches!(b.kind(), ValueKind::String | ValueKind::Seq)
    {
        fits(checked_size(&a, "a sum")?.saturating_add(checked_size(&b, "a sum")?), "a sum")?;
    }
    plain_binary("a + b", a, b)
}

/// `a * b`: repeats strings and lists (bounded), multiplies numbers.
fn mul(a: Value, b: Value) -> Result<Value, Error> {
    in_time()?;
    let (repeated, times) = match (a.kind(), b.kind()) {
        (ValueKind::Number, _) => (&b, &a),
        _ => (&a, &b),
    };
    if repeated.kind() != ValueKind::Number {
        let times = times.as_usize().unwrap_or(0);
        fits(checked_size(repeated, "a repeated value")?.saturating_mul(times), "a repeated value")?;
    }
    plain_binary("a * b", a, b)
}

/// Evaluates `expression` over `a` and `b` with minijinja's own operators, once the size is
/// known to be fine (an environment without the rewriting, so this does not recurse).
fn plain_binary(expression: &'static str, a: Value, b: Value) -> Result<Value, Error> {
    static PLAIN: std::sync::LazyLock<Environment<'static>> = std::sync::LazyLock::new(Environment::empty);
    PLAIN.compile_expression(expression)?.eval(minijinja::context! { a, b })
}

/// The formatter: every byte a render writes passes here and is counted.
pub(super) fn format_output(out: &mut Output<'_>, state: &mut State<'_, '_>, value: &Value) -> Result<(), Error> {
    in_time()?;
    let limit = BUDGET.with(|cell| cell.get().map_or(usize::MAX, |budget| budget.output_left));
    let size = text_size(value, limit);
    let left = limit.checked_sub(size).ok_or_else(|| {
        let max = BUDGET.with(|cell| cell.get().map_or(0, |budget| budget.max_output_bytes));
        exceeded(Error::new(
            ErrorKind::InvalidOperation,
            format!("the rendered text would be over the limit of {max} bytes"),
        ))
    })?;
    BUDGET.with(|cell| {
        if let Some(mut budget) = cell.get() {
            budget.output_left = left;
            cell.set(Some(budget));
        }
    });
    minijinja::escape_formatter(out, state, value)
}

/// Installs the bounded operators, filters and formatter in `env`.
pub(super) fn install(env: &mut Environment<'static>) {
    env.add_function(CONCAT, concat);
    env.add_function(ADD, add);
    env.add_function(MUL, mul);
    env.remove_global("debug");
    env.remove_global("namespace");
    env.remove_filter("format");
    bound_filter(env, "join", Value::from_function(filters::join), |args| {
        let items = args.first().and_then(|value| value.try_iter().ok()).map_or(0, Iterator::count);
        let joiner = args.get(1).and_then(Value::as_str).map_or(0, str::len);
        size_of(args.first()).saturating_add(joiner.saturating_mul(items))
    });
    bound_filter(env, "replace", Value::from_function(filters::replace), |args| {
        let (text, from) = (text_of(args.first()), text_of(args.get(1)));
        let found = if from.is_empty() { text.chars().count() + 1 } else { text.matches(from.as_str()).count() };
        text.len().saturating_add(found.saturating_mul(size_of(args.get(2))))
    });
    bound_filter(env, "indent", Value::from_function(filters::indent), |args| {
        let lines = text_of(args.first()).lines().count().saturating_add(1);
        let width = args.get(1).and_then(Value::as_usize).unwrap_or(0);
        size_of(args.first()).saturating_add(width.saturating_mul(lines))
    });
    // Escaping can grow a string six-fold (`\u0000`); an indent adds up to `indent × depth`
    // spaces to each line, and every line holds at least a byte of the value.
    bound_filter(env, "tojson", Value::from_function(filters::tojson), |args| {
        let size = size_of(args.first());
        let indent = match args.get(1) {
            Some(flag) if flag.kind() == ValueKind::Bool => usize::from(flag.is_true()) * 2,
            Some(width) => width.as_usize().unwrap_or(0),
            None => 0,
        };
        let depth = args.first().map_or(0, |value| depth_of(value, MAX_DEPTH));
        size.saturating_mul(6).saturating_add(size.saturating_mul(indent).saturating_mul(depth))
    });
    // The count, not the input, sizes these: `[1] | slice(1000000000)` builds a billion lists,
    // and `batch(n, fill)` pads the last batch with `n` copies of `fill`.
    bound_filter(env, "slice", Value::from_function(filters::slice), |args| {
        let count = args.get(1).and_then(Value::as_usize).unwrap_or(0);
        size_of(args.first()).saturating_add(count.saturating_mul(size_of(args.get(2)).saturating_add(4)))
    });
    bound_filter(env, "batch", Value::from_function(filters::batch), |args| {
        let count = args.get(1).and_then(Value::as_usize).unwrap_or(0);
        let padding =
            args.get(2).map_or(0, |fill| count.saturating_mul(text_size(fill, value_limit()).saturating_add(2)));
        size_of(args.first()).saturating_mul(2).saturating_add(padding)
    });
    bound_filter(env, "string", Value::from_function(filters::string), |args| size_of(args.first()));
    // printf-style padding (`"%999999999s"|format`) and deep pretty-printing have no place in
    // a prompt and are hard to bound: they are not offered.
    env.remove_filter("format");
    env.remove_filter("pprint");
    // Every other filter, and `range`, only look at the clock before doing their work.
    timed_filters!(env, [
        "safe" => filters::safe, "escape" => filters::escape, "e" => filters::escape,
        "upper" => filters::upper, "lower" => filters::lower, "title" => filters::title,
        "capitalize" => filters::capitalize, "length" => filters::length, "count" => filters::length,
        "dictsort" => filters::dictsort, "items" => filters::items, "reverse" => filters::reverse,
        "trim" => filters::trim, "split" => filters::split, "lines" => filters::lines,
        "default" => filters::default, "d" => filters::default, "abs" => filters::abs, "int" => filters::int,
        "float" => filters::float, "sum" => filters::sum, "attr" => filters::attr, "round" => filters::round,
        "first" => filters::first, "last" => filters::last, "min" => filters::min, "max" => filters::max,
        "sort" => filters::sort, "list" => filters::list, "bool" => filters::bool, "select" => filters::select,
        "selectattr" => filters::selectattr, "reject" => filters::reject, "rejectattr" => filters::rejectattr,
        "map" => filters::map, "groupby" => filters::groupby, "unique" => filters::unique,
        "chain" => filters::chain, "zip" => filters::zip,
    ]);
    let range = Value::from_function(minijinja::functions::range);
    env.add_function("range", move |state: &mut State<'_, '_>, args: Rest<Value>, kwargs: Kwargs| {
        in_time()?;
        range.call(state, &with_kwargs(args, kwargs))
    });
    env.set_formatter(format_output);
}

/// Replaces each filter with one that checks the render's deadline, then calls minijinja's.
macro_rules! timed_filters {
    ($env:expr, [$($name:literal => $filter:path),* $(,)?]) => {
        $(
            let original = Value::from_function($filter);
            $env.add_filter($name, move |state: &mut State<'_, '_>, args: Rest<Value>, kwargs: Kwargs| {
                in_time()?;
                original.call(state, &with_kwargs(args, kwargs))
            });
        )*
    };
}
use timed_filters;

/// Positional arguments with the keyword ones after them, as minijinja passes a call on.
fn with_kwargs(args: Rest<Value>, kwargs: Kwargs) -> Vec<Value> {
    let mut all = args.0;
    if kwargs.args().next().is_some() {
        all.push(Value::from(kwargs));
    }
    all
}

/// Replaces the filter `name` with one that estimates the size of its result from its
/// arguments first (`estimate`) and calls minijinja's own (`original`) only if it fits.
fn bound_filter(
    env: &mut Environment<'static>,
    name: &'static str,
    original: Value,
    estimate: impl Fn(&[Value]) -> usize + Send + Sync + 'static,
) {
    env.add_filter(name, move |state: &mut State<'_, '_>, args: Rest<Value>, kwargs: Kwargs| {
        in_time()?;
        fits(estimate(&args), &format!("the result of `{name}`"))?;
        original.call(state, &with_kwargs(args, kwargs))
    });
}

/// Deeper than any value a template can build from JSON (serde_json stops at 128).
const MAX_DEPTH: usize = 256;

/// How deeply `value` nests lists, maps and other iterables such as `range()` (0 for anything
/// else), looking at most `cap` deep.
fn depth_of(value: &Value, cap: usize) -> usize {
    let kind = value.kind();
    if cap == 0 || !matches!(kind, ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain) {
        return 0;
    }
    let Ok(items) = value.try_iter() else { return 1 };
    let deepest = items
        .map(|item| match kind {
            ValueKind::Map => value.get_item(&item).map_or(0, |entry| depth_of(&entry, cap - 1)),
            _ => depth_of(&item, cap - 1),
        })
        .max()
        .unwrap_or(0);
    1 + deepest
}

/// The text size of an argument, stopping just past the value limit.
fn size_of(value: Option<&Value>) -> usize {
    value.map_or(0, |value| text_size(value, value_limit()))
}

/// An argument as text; a value over the limit counts as empty here, and `size_of` refuses it.
fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(value) if text_size(value, value_limit()) <= value_limit() => value.to_string(),
        _ => String::new(),
    }
}

/// Refuses `*` between a literal string, list or parenthesis and anything else: the compiler
/// would fold such a product itself, at any size, before a render could bound it.
pub(super) fn check_repetition(source: &str, in_expression: bool) -> Result<(), Error> {
    let tokens = tokenize(source, in_expression, Default::default())
        .map(|token| token.map(|(token, _)| token))
        .collect::<Result<Vec<_>, _>>()?;
    for (at, token) in tokens.iter().enumerate() {
        if !matches!(token, Token::Mul) {
            continue;
        }
        let before = at.checked_sub(1).and_then(|before| tokens.get(before));
        let after = tokens.get(at + 1);
        let literal_before =
            matches!(before, Some(Token::Str(_) | Token::String(_) | Token::BracketClose | Token::ParenClose));
        let literal_after =
            matches!(after, Some(Token::Str(_) | Token::String(_) | Token::BracketOpen | Token::ParenOpen));
        if literal_before || literal_after {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "`*` may only stand between names and numbers (repeating a literal string, list or \
                 parenthesised expression is not allowed)",
            ));
        }
    }
    Ok(())
}

/// `instructions` with `~`, `+` and `*` calling the bounded functions above, and raw text
/// emitted through the formatter. Raw text becomes two instructions (load it, emit it), so
/// every jump target is moved to where its instruction went.
pub(super) fn rewrite<'source>(instructions: &Instructions<'source>) -> Instructions<'source> {
    let old: Vec<&Instruction<'source>> = (0u32..).map_while(|at| instructions.get(at)).collect();
    let mut moved_to = Vec::with_capacity(old.len() + 1);
    let mut next = 0u32;
    for instruction in &old {
        moved_to.push(next);
        next += if matches!(instruction, Instruction::EmitRaw(_)) { 2 } else { 1 };
    }
    moved_to.push(next); // a jump to the end stays at the end
    let target = |old_target: &u32| moved_to.get(*old_target as usize).copied().unwrap_or(next);

    let mut rewritten = Instructions::new(instructions.name(), instructions.source());
    for (at, instruction) in old.iter().enumerate() {
        let at = at as u32;
        let replaced: Vec<Instruction<'source>> = match instruction {
            Instruction::EmitRaw(raw) => vec![Instruction::LoadConst(Value::from(*raw)), Instruction::Emit],
            Instruction::StringConcat => vec![Instruction::CallFunction(CONCAT, Some(2))],
            Instruction::Add => vec![Instruction::CallFunction(ADD, Some(2))],
            Instruction::Mul => vec![Instruction::CallFunction(MUL, Some(2))],
            Instruction::Jump(to) => vec![Instruction::Jump(target(to))],
            Instruction::JumpIfFalse(to) => vec![Instruction::JumpIfFalse(target(to))],
            Instruction::JumpIfFalseOrPop(to) => vec![Instruction::JumpIfFalseOrPop(target(to))],
            Instruction::JumpIfTrueOrPop(to) => vec![Instruction::JumpIfTrueOrPop(target(to))],
            Instruction::Iterate(to) => vec![Instruction::Iterate(target(to))],
            other => vec![(*other).clone()],
        };
        for instruction in replaced {
            match (instructions.get_span(at), instructions.get_line(at)) {
                (Some(span), _) => rewritten.add_with_span(instruction, span),
                (None, Some(line)) => rewritten.add_with_line(instruction, u16::try_from(line).unwrap_or(u16::MAX)),
                (None, None) => rewritten.add(instruction),
            };
        }
    }
    rewritten
}
