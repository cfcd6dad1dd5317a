<?php
// Each request must find a clean state: no global, constant, function,
// static, header or output of the last request.
function counter() { static $n = 0; return ++$n; }
$seen = [
    "global" => isset($GLOBALS["leaked"]),
    "constant" => defined("LEAKED"),
    "static" => counter(),
    "headers" => headers_list(),
    "code" => http_response_code(),
    "ob" => ob_get_level(),
    "get" => $_GET,
];
$leaked = 1;
define("LEAKED", 1);
header("X-Leak: " . ($_GET["v"] ?? ""));
if (isset($_GET["code"])) http_response_code((int)$_GET["code"]);
ob_start();
echo json_encode($seen);
