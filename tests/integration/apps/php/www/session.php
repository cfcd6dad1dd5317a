<?php
session_start();
$_SESSION["n"] = ($_SESSION["n"] ?? 0) + 1;
echo $_SESSION["n"], " ", session_save_path();
