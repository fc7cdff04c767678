"""pipecat's ``LLMContextFrame`` as values: its context's messages, tools and tool choice.

An ``LLMContext`` is an object, not a value, so the frame table carries it as the values it is
made of: the messages (a message for one LLM service only, an ``LLMSpecificMessage``, as a map
naming that service), the tools (a ``ToolsSchema``'s function schemas and custom tools) and
the tool choice; pipecat's ``NOT_GIVEN`` travels as an absent value. Function tools given as
Python callables have no wire form and are refused.
"""

from __future__ import annotations

from typing import Any, Final

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import AdapterType, ToolsSchema
from pipecat.frames.frames import LLMContextFrame
from pipecat.processors.aggregators.llm_context import NOT_GIVEN, LLMContext, LLMSpecificMessage
from pipecat.utils.types import is_given

from natsbus import frames as nf
from natsbus.errors import UnsupportedValueError

__all__ = ["CONTEXT_FIELDS", "context_from_natsbus", "context_to_natsbus"]

CONTEXT_FIELDS: Final = ("messages", "tools", "tool_choice", "speculation")
"""The fields of the natsbus twin of ``LLMContextFrame``."""

_SPECIFIC: Final = "pipecat.llm_specific"
"""The key that marks a message meant for one LLM service only (its value names it)."""


def _message_out(message: Any) -> Any:
    if isinstance(message, LLMSpecificMessage):
        return {_SPECIFIC: message.llm, "message": message.message}
    return message


def _message_in(message: Any) -> Any:
    if isinstance(message, dict) and _SPECIFIC in message:
        return LLMSpecificMessage(llm=message[_SPECIFIC], message=message.get("message"))
    return message


def _tools_out(tools: Any) -> dict[str, Any] | None:
    if not is_given(tools):
        return None
    standard = tools.standard_tools if isinstance(tools, ToolsSchema) else [tools]
    for tool in standard:
        if not isinstance(tool, FunctionSchema):
            # A direct function is Python code: the other process could not call it.
            raise UnsupportedValueError(
                f"an LLMContext tool of type {type(tool).__name__} has no wire form: give a"
                " ToolsSchema of FunctionSchema"
            )
    out: dict[str, Any] = {"standard": [tool.to_default_dict() for tool in tools.standard_tools]}
    if tools.custom_tools:
        out["custom"] = {kind.value: value for kind, value in tools.custom_tools.items()}
    return out


def _tools_in(tools: dict[str, Any] | None) -> Any:
    if tools is None:
        return NOT_GIVEN
    standard = []
    for tool in tools.get("standard", []):
        parameters = tool.get("parameters", {})
        standard.append(
            FunctionSchema(
                name=tool["name"],
                description=tool.get("description", ""),
                properties=parameters.get("properties", {}),
                required=parameters.get("required", []),
            )
        )
    custom = {AdapterType(kind): value for kind, value in tools.get("custom", {}).items()}
    return ToolsSchema(standard_tools=standard, custom_tools=custom or None)


def context_to_natsbus(twin: type[nf.Frame]) -> Any:
    """The conversion of an ``LLMContextFrame`` to its natsbus twin ``twin``."""

    def convert(frame: LLMContextFrame) -> nf.Frame:
        context = frame.context
        choice = context.tool_choice
        return twin(
            messages=[_message_out(m) for m in context.messages],  # type: ignore[call-arg]
            tools=_tools_out(context.tools),
            tool_choice=choice if is_given(choice) else None,
            speculation=frame.speculation,
        )

    return convert


def context_from_natsbus(frame: Any) -> LLMContextFrame:
    """Build pipecat's ``LLMContextFrame`` from its natsbus twin."""
    context = LLMContext(
        messages=[_message_in(m) for m in frame.messages or []],
        tools=_tools_in(frame.tools),
        tool_choice=NOT_GIVEN if frame.tool_choice is None else frame.tool_choice,
    )
    return LLMContextFrame(context, speculation=bool(frame.speculation))
